"""Prediction with OmniSapiens or a base Qwen2.5-Omni: task heads or free-text generation, batched and resumable.

- ``heads`` mode (an hba checkpoint): classification samples get the head's label and its probabilities;
  free-text samples get generated text from the LM head.
- ``generate`` mode (a checkpoint, a hub id or a local model): free text for every sample - how the
  paper evaluates base models zero-shot and the RL model. Greedy by default. With ``template="think"``
  the prompt asks for ``<think>`` reasoning and a ``\\boxed{}`` answer (App. B.2); the prediction is the
  answer span hba-score reads (:func:`hba_core.answers.answer_span`: the box after ``</think>``) and the
  whole text is kept as ``raw_output``.

Rows follow ``schemas/prediction.schema.json`` and feed hba-score and hba-judge as they are. Output is
appended line by line (:class:`~hba_core.jsonl.ResumableWriter`): a re-run skips ids already written.
Samples whose media cannot be decoded are reported and counted, not written (a re-run retries them).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hba_core.errors import InputError
from hba_core.jsonl import PathLike, ResumableWriter
from hba_core.model import checkpoint as ckpt
from hba_core.model.backbone import DEFAULT_MODEL, load_processor, load_thinker
from hba_core.model.backbones import backbone_for
from hba_core.model.batching import make_loader, plan_batches
from hba_core.model.collate import Batch, Collator, MediaSettings
from hba_core.model.generic import GenericCollator, GenericModel, Substitutions, load_generic
from hba_core.model.omnisapiens import OmniSapiens, generate, label_probabilities, pooled_penultimate_early
from hba_core.model.reference import find_reference_checkpoint, load_reference_checkpoint
from hba_core.model.source import locate, looks_like_hub_id
from hba_core.sample_checks import sample_problem, where_of
from hba_core.samples import iter_samples
from hba_core.served import checked_row, generated_row, think_prediction  # noqa: F401 - think_prediction: API
from hba_core.threads import configure_torch_threads
from hba_core.training.distributed import Distributed

MODES = ("heads", "generate")


@dataclass
class Predictor:
    """A loaded model ready to predict: ``model`` is None for a base model without heads.

    ``bam`` (dataset -> BAM set) and ``store`` (descriptor store) apply Behavioral Adapter Modules:
    those datasets' rows are classified by their BAM head on h_penult + Δh.
    """

    name: str
    thinker: Any  # the Omni Thinker, or any other backbone's model (``generic`` is then set)
    processor: Any
    model: OmniSapiens | None = None
    bam: dict[str, Any] | None = None
    store: Any = None
    generic: GenericModel | None = None  # a non-Omni backbone (hba_core.model.generic)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)  # a causal LM's "processor" is its tokenizer

    @property
    def adapter(self) -> str:
        return self.generic.backbone.adapter if self.generic is not None else "omni_thinker"

    @functools.cached_property
    def stop_ids(self) -> list[int] | None:
        """Token ids generation stops at: the Omni Thinker's EOS (None), or another backbone's EOS and the
        end-of-turn token its chat template closes a turn with (Gemma 3's ``<end_of_turn>`` is not its EOS;
        what hba-sft trains a backbone to end an answer with: :func:`hba_core.model.generic.end_of_turn`)."""
        if self.generic is None:
            return None
        from hba_core.model.generic import end_of_turn

        end = end_of_turn(self.processor, plain_strings=self.adapter == "causal_lm")
        return sorted({self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids(end)})


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

    pooled = pooled_penultimate_early(predictor.thinker, batch)  # heads only: stop before the last layer
    result = predictor.model.classify_pooled(pooled, batch.tasks, batch.datasets)
    for name in bams:
        rows = [i for i, d in enumerate(batch.datasets) if d == name]
        bam = predictor.bam[name]
        logits = bam_logits(bam, pooled[rows], [samples[batch.ids[i]] for i in rows], predictor.store)
        result.update(label_probabilities(logits, bam.labels, rows))
    return result


def _local_dir(name_or_path: str) -> Path | None:
    """``name_or_path`` as a local directory: itself, or a hub id's snapshot in the Hugging Face cache."""
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    if not looks_like_hub_id(name_or_path):
        return None
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(name_or_path, local_files_only=True, cache_dir=os.environ.get("HF_HUB_CACHE") or None)
        )
    except Exception:  # not cached: the base-model path below says what to do
        return None


def load_predictor(
    name_or_path: str, *, dtype: str = "float32", base_model: str | None = None, device: str | None = None
) -> Predictor:
    """An hba checkpoint (heads + adapter), a reference SFT checkpoint (heads + LoRA, saved by the
    reference trainer; its backbone is ``base_model``, default Qwen/Qwen2.5-Omni-7B) or a plain
    Qwen2.5-Omni model (hub id or path, generate only; a full Omni release works, its Talker unread)."""
    local = _local_dir(name_or_path)
    if local is not None and ckpt.is_checkpoint(local):
        model, config = ckpt.load_checkpoint(local, dtype=dtype, base_model=base_model)
        if device:
            model.to(device)
        processor = ckpt.load_checkpoint_processor(local, config, base_model=base_model)
        generic = None  # a checkpoint on another backbone collates, and generates, through the generic path
        if model.backbone.adapter != "omni_thinker":
            generic = GenericModel(name_or_path, model.backbone, model.thinker, processor)
        return Predictor(name_or_path, model.thinker, processor, model, generic=generic)
    if local is not None and find_reference_checkpoint(local) is not None:
        base = base_model or DEFAULT_MODEL
        model, _ = load_reference_checkpoint(local, base_model=base, dtype=dtype)
        if device:
            model.to(device)
        return Predictor(name_or_path, model.thinker, load_processor(base), model)
    source = locate(name_or_path, flag="--model")
    if backbone_for(source.config).adapter != "omni_thinker":  # chosen from config.json, before any weights
        gm = load_generic(source.load_from, source.config, name=name_or_path, dtype=dtype, device=device)
        return Predictor(name_or_path, gm.model, gm.processor, generic=gm)
    thinker = load_thinker(name_or_path, dtype=dtype, device=device, flag="--model")
    return Predictor(name_or_path, thinker, load_processor(name_or_path, flag="--model"))


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
            texts = generate(
                predictor.thinker,
                batch,
                predictor.tokenizer,
                max_new_tokens=max_new_tokens,
                stop_ids=predictor.stop_ids,
            )
    for i, sample_id in enumerate(batch.ids):
        if i not in classified:
            rows.append(generated_row(sample_id, batch.datasets[i], predictor.name, texts[i], template, mode=mode))
            continue
        label, probs = classified[i]
        row = {"id": sample_id, "dataset": batch.datasets[i], "model": predictor.name, "mode": mode}
        rows.append(checked_row({**row, "prediction": label, "probs": probs}))
    return rows


def check_mode(predictor: Predictor, mode: str) -> None:
    """Refuse an unknown mode, or heads mode without heads, before any sample is read."""
    if mode not in MODES:
        raise InputError("--mode", f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if mode == "heads" and predictor.model is None:
        raise InputError(
            predictor.name,
            "heads mode needs an hba checkpoint (written by hba-sft); use --mode generate for a base model",
        )
    if mode == "heads" and not predictor.model.heads_trained:
        raise InputError(
            predictor.name,
            "its task heads were never trained (hba-sft gen, or qa without --init): use --mode generate",
        )


def read_samples(samples: PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """(predictable samples in file order, one message per bad row); a repeated id is an error."""
    seen: dict[str, int] = {}
    good, bad_rows = [], []
    for line, sample in iter_samples(samples, media=True):
        if sample["id"] in seen:
            raise InputError(
                f"{samples}:{line}",
                f"id {sample['id']!r} already used on line {seen[sample['id']]}; "
                "ids must be unique (drop the id field to derive ids from content)",
            )
        seen[sample["id"]] = line
        if (problem := sample_problem(sample)) is not None:  # reported; the other rows are still predicted
            bad_rows.append(f"{where_of(samples, line, sample)}: {problem}")
            continue
        good.append(sample)
    return good, bad_rows


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
    distributed: Distributed | None = None,
) -> dict[str, Any]:
    """Predict every sample of ``samples`` not yet in ``out``; returns a summary (counts, samples/s).

    Under torchrun / deepspeed (``distributed`` with world size > 1), or when ``OUT.parts/`` is left by
    an unfinished data-parallel run, the samples are sharded by rank and merged into ``out`` at the end
    (:mod:`hba_core.predict_parallel`).
    """
    from hba_core import predict_parallel

    check_mode(predictor, mode)
    world = distributed.world_size if distributed is not None else 1
    configure_torch_threads(workers=workers)  # processes: LOCAL_WORLD_SIZE / LOCAL_SIZE
    options = dict(
        media=media,
        mode=mode,
        template=template,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        workers=workers,
    )
    if world > 1 or predict_parallel.parts_dir(out).exists():
        return predict_parallel.predict_sharded(
            predictor, samples, out, distributed or Distributed(), progress=progress, **options
        )
    good, bad_rows = read_samples(samples)
    start = time.perf_counter()
    with ResumableWriter(out) as writer:  # the lock is released on every exit
        already = len(writer.done)
        todo = [s for s in good if s["id"] not in writer.done]
        run = predict_into(predictor, todo, writer, progress=progress, **options)
    elapsed = time.perf_counter() - start
    return {
        "out": str(out),
        "processes": 1,
        **run,
        "already_done": already,
        "bad_rows": bad_rows,
        "adapter": predictor.adapter,
        "seconds": round(elapsed, 3),
        "samples_per_s": round(run["written"] / elapsed, 3) if elapsed else None,
    }


def predict_into(
    predictor: Predictor,
    todo: list[dict[str, Any]],
    writer: ResumableWriter,
    *,
    media: MediaSettings,
    mode: str,
    template: str | None,
    batch_size: int,
    max_new_tokens: int,
    workers: int,
    progress: bool,
) -> dict[str, Any]:
    """Predict ``todo`` (already filtered for resume) into ``writer``; returns the counts of this process."""
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
    if predictor.generic is not None:
        collate: Any = GenericCollator(predictor.generic, media, template=template)
    else:
        collate = Collator(predictor.processor, media, targets=False, template=template)
    substitutions = Substitutions()
    bar = _progress_bar(len(todo)) if progress else None
    written, skipped, cut = 0, [], 0
    for module in (predictor.thinker, predictor.model):
        if module is not None:
            module.eval()
    device = next(predictor.thinker.parameters()).device
    with torch.no_grad():
        for batch in make_loader(todo, plan, collate, workers=workers):
            skipped.extend(batch.skipped)
            cut += batch.audio_cut
            substitutions.merge(batch.substitutions)
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
    return {
        "written": written,
        "skipped": len(skipped),
        "skipped_ids": [sid for sid, _ in skipped],
        "audio_clips_cut": cut,
        "substitutions": substitutions.as_dict(),
    }


def _progress_bar(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="sample", file=sys.stderr, desc="predict")
