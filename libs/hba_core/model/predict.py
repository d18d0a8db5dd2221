"""Prediction with OmniSapiens or a base Qwen2.5-Omni: task heads or free-text generation, batched and resumable.

- ``heads`` mode (an hba checkpoint): classification samples get the head's label and its probabilities;
  free-text samples get generated text from the LM head.
- ``generate`` mode (a checkpoint, a hub id or a local model): free text for every sample - how the
  paper evaluates base models zero-shot and the RL model. Greedy by default. With ``template="think"``
  the prompt asks for ``<think>`` reasoning and a ``\\boxed{}`` answer (App. B.2); the boxed content is
  the prediction and the whole text is kept as ``raw_output``.

Rows follow ``schemas/prediction.schema.json`` and feed hba-score and hba-judge as they are. Output is
appended line by line (:class:`~hba_core.jsonl.ResumableWriter`): a re-run skips ids already written.
Samples whose media cannot be decoded are reported and counted, not written (a re-run retries them).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from hba_core import schemas
from hba_core.answers import extract_boxed, strip_think
from hba_core.errors import InputError
from hba_core.jsonl import PathLike, ResumableWriter
from hba_core.model import checkpoint as ckpt
from hba_core.model.backbone import load_processor, load_thinker
from hba_core.model.batching import make_loader, plan_batches
from hba_core.model.collate import Batch, Collator, MediaSettings
from hba_core.model.omnisapiens import OmniSapiens, generate, label_probabilities, pooled_penultimate
from hba_core.samples import iter_samples

MODES = ("heads", "generate")


@dataclass
class Predictor:
    """A loaded model ready to predict: ``model`` is None for a base model without heads.

    ``bam`` (dataset -> BAM set) and ``store`` (descriptor store) apply Behavioral Adapter Modules:
    those datasets' rows are classified by their BAM head on h_penult + Δh.
    """

    name: str
    thinker: Any
    processor: Any
    model: OmniSapiens | None = None
    bam: dict[str, Any] | None = None
    store: Any = None


def attach_bam(predictor: Predictor, bam_dir: str, store_path: str) -> None:
    """Load the BAM sets under ``bam_dir`` (hba-bam's output) and the descriptor store they read."""
    from hba_core.bam.apply import load_bams
    from hba_core.descriptors.store import open_store

    if predictor.model is None:
        raise InputError(predictor.name, "--bam needs an hba checkpoint (the SFT model the adapters were trained on)")
    predictor.bam = load_bams(bam_dir)
    predictor.store = open_store(store_path)


@contextlib.contextmanager
def _bam_decoder(predictor: Predictor, batch: Batch, samples: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Generation with a free-text BAM set: its LM head, and its Δh added before the last decoder layer."""
    names = set(batch.datasets)
    bam = predictor.bam.get(next(iter(names))) if predictor.bam and len(names) == 1 else None
    if bam is None or bam.lm_head is None:
        yield
        return
    from hba_core.bam.apply import bam_delta
    from hba_core.bam.decoder import delta_before_last_layer, lm_head_weights

    delta = bam_delta(bam, [samples[i] for i in batch.ids], predictor.store)
    device = next(predictor.thinker.parameters()).device
    with lm_head_weights(predictor.thinker, bam.lm_head), delta_before_last_layer(predictor.thinker, delta.to(device)):
        yield


def _classify(
    predictor: Predictor,
    batch: Batch,
    samples: dict[str, dict[str, Any]],
) -> dict[int, tuple[str, dict[str, float]]]:
    assert predictor.model is not None
    bams = {name for name in set(batch.datasets) & set(predictor.bam or {}) if predictor.bam[name].head is not None}
    if not bams:
        return predictor.model.classify(batch)
    from hba_core.bam.apply import bam_logits

    pooled, _ = pooled_penultimate(predictor.thinker, batch)
    result = predictor.model.classify_pooled(pooled, batch.tasks)
    for name in bams:
        rows = [i for i, d in enumerate(batch.datasets) if d == name]
        bam = predictor.bam[name]
        logits = bam_logits(bam, pooled[rows], [samples[batch.ids[i]] for i in rows], predictor.store)
        result.update(label_probabilities(logits, bam.labels, rows))
    return result


def load_predictor(
    name_or_path: str, *, dtype: str = "float32", base_model: str | None = None, device: str | None = None
) -> Predictor:
    """An hba checkpoint (heads + adapter) or a plain Qwen2.5-Omni model (hub id or path, generate only)."""
    if ckpt.is_checkpoint(name_or_path):
        model, config = ckpt.load_checkpoint(name_or_path, dtype=dtype, base_model=base_model)
        if device:
            model.to(device)
        return Predictor(name_or_path, model.thinker, ckpt.load_checkpoint_processor(name_or_path, config), model)
    return Predictor(name_or_path, load_thinker(name_or_path, dtype=dtype, device=device), load_processor(name_or_path))


def predict_batch(
    predictor: Predictor,
    batch: Batch,
    *,
    mode: str,
    template: str | None,
    max_new_tokens: int,
    samples: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Prediction rows for one collated batch."""
    rows: list[dict[str, Any]] = []
    classified: dict[int, tuple[str, dict[str, float]]] = {}
    if mode == "heads":
        if predictor.model is None:
            raise InputError(
                predictor.name,
                "heads mode needs an hba checkpoint (written by hba-sft); use --mode generate for a base model",
            )
        classified = _classify(predictor, batch, samples or {})
    texts: list[str] = []
    if len(classified) < len(batch):
        with _bam_decoder(predictor, batch, samples or {}):
            texts = generate(predictor.thinker, batch, predictor.processor.tokenizer, max_new_tokens=max_new_tokens)
    for i, sample_id in enumerate(batch.ids):
        row: dict[str, Any] = {"id": sample_id, "dataset": batch.datasets[i], "model": predictor.name, "mode": mode}
        if i in classified:
            row["prediction"], row["probs"] = classified[i]
        else:
            text = texts[i]
            if template == "think":
                boxed = extract_boxed(text)
                row["prediction"] = boxed if boxed is not None else (strip_think(text) or None)
                row["raw_output"] = text
            else:
                row["prediction"] = text.strip() or None
        problems = schemas.errors(row, "prediction")
        if problems:
            raise ValueError(f"prediction row does not match its schema: {problems}")
        rows.append(row)
    return rows


def predict_file(
    predictor: Predictor,
    samples: PathLike,
    out: PathLike,
    *,
    media: MediaSettings,
    mode: str = "heads",
    template: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 64,
    workers: int = 2,
    progress: bool = False,
) -> dict[str, Any]:
    """Predict every sample of ``samples`` not yet in ``out``; returns a summary (counts, samples/s)."""
    if mode not in MODES:
        raise InputError("--mode", f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if mode == "heads" and predictor.model is None:
        raise InputError(
            predictor.name,
            "heads mode needs an hba checkpoint (written by hba-sft); use --mode generate for a base model",
        )
    writer = ResumableWriter(out)
    already = len(writer.done)
    seen: dict[str, int] = {}
    todo = []
    for line, sample in iter_samples(samples):
        if sample["id"] in seen:
            raise InputError(
                f"{samples}:{line}",
                f"id {sample['id']!r} already used on line {seen[sample['id']]}; "
                "ids must be unique (drop the id field to derive ids from content)",
            )
        seen[sample["id"]] = line
        if sample["id"] not in writer.done:
            todo.append(sample)
    by_id = {s["id"]: s for s in todo}
    if predictor.bam:  # a BAM set is per dataset: one dataset per batch
        plan = []
        for name in dict.fromkeys(s["dataset"] for s in todo):
            members = [i for i, s in enumerate(todo) if s["dataset"] == name]
            plan += [
                [members[j] for j in b]
                for b in plan_batches([todo[i] for i in members], batch_size, seed=0, epoch=0, shuffle=False)
            ]
    else:
        plan = plan_batches(todo, batch_size, seed=0, epoch=0, shuffle=False)
    collate = Collator(predictor.processor, media, targets=False, template=template)
    bar = _progress_bar(len(todo)) if progress else None
    written, skipped, cut = 0, [], 0
    start = time.perf_counter()
    for module in (predictor.thinker, predictor.model):
        if module is not None:
            module.eval()
    device = next(predictor.thinker.parameters()).device
    with writer, torch.no_grad():
        for batch in make_loader(todo, plan, collate, workers=workers):
            skipped.extend(batch.skipped)
            cut += batch.audio_cut
            if batch.ids:
                rows = predict_batch(
                    predictor,
                    batch.to(device),
                    mode=mode,
                    template=template,
                    max_new_tokens=max_new_tokens,
                    samples=by_id,
                )
                writer.write(rows)
                written += len(rows)
            if bar is not None:
                bar.update(len(batch) + len(batch.skipped))
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start
    return {
        "out": str(out),
        "written": written,
        "already_done": already,
        "skipped": len(skipped),
        "skipped_ids": [sid for sid, _ in skipped],
        "audio_clips_cut": cut,
        "seconds": round(elapsed, 3),
        "samples_per_s": round(written / elapsed, 3) if elapsed else None,
    }


def _progress_bar(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="sample", file=sys.stderr, desc="predict")
