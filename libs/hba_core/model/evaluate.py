"""Validation during SFT (cross-entropy and accuracy per dataset) and saving under ZeRO-3."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from hba_core.model.batching import make_loader, plan_batches
from hba_core.training.distributed import all_gather


def validation_metrics(trainer: Any, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``ce`` (the selection criterion: heads CE per sample + LM CE per target token, as the stage trains),
    plus ``<dataset>/ce``, ``<dataset>/accuracy`` and ``<dataset>/<metric>`` (the paper's metric, computed by
    hba-score's own functions on the heads' predictions) per classification dataset, over all ranks."""
    opts = trainer.opts
    per: dict[str, dict[str, float]] = {}
    predictions: list[dict[str, Any]] = []
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        by_dataset.setdefault(sample["dataset"], []).append(sample)
    for name, subset in sorted(by_dataset.items()):  # batches of one dataset: sums split by dataset exactly
        plan = plan_batches(subset, opts.micro_batch, seed=opts.seed, epoch=0, shuffle=False)
        acc = per.setdefault(name, {"cls_sum": 0.0, "cls_n": 0, "correct": 0, "lm_sum": 0.0, "lm_n": 0})
        for batch in make_loader(
            subset, plan[trainer.dist.rank :: trainer.dist.world_size], trainer.collate, workers=min(opts.workers, 1)
        ):
            if not batch.ids:
                continue
            losses = trainer.forward(batch.to(trainer.dist.device))  # the stage's losses, same precision as training
            acc["cls_sum"] += losses.cls_sum
            acc["cls_n"] += losses.cls_count
            acc["correct"] += losses.correct
            acc["lm_sum"] += losses.lm_sum
            acc["lm_n"] += losses.lm_count
            for row, index in losses.predicted.items():
                labels = trainer.model.label_space[batch.tasks[row]]
                predictions.append({"id": batch.ids[row], "prediction": labels[index]})
    merged: dict[str, dict[str, float]] = {}
    for part in all_gather(per):
        for name, acc in part.items():
            into = merged.setdefault(name, dict.fromkeys(acc, 0))
            for key, value in acc.items():
                into[key] += value
    totals = {key: sum(acc[key] for acc in merged.values()) for key in ("cls_sum", "cls_n", "lm_sum", "lm_n")}
    ce = 0.0
    if totals["cls_n"]:
        ce += totals["cls_sum"] / totals["cls_n"]
    if totals["lm_n"]:
        ce += totals["lm_sum"] / totals["lm_n"]
    metrics: dict[str, Any] = {"ce": ce if (totals["cls_n"] or totals["lm_n"]) else float("inf")}
    for name, acc in sorted(merged.items()):
        if acc["cls_n"]:
            metrics[f"{name}/ce"] = acc["cls_sum"] / acc["cls_n"]
            metrics[f"{name}/accuracy"] = acc["correct"] / acc["cls_n"]
        if acc["lm_n"]:
            metrics[f"{name}/lm_ce"] = acc["lm_sum"] / acc["lm_n"]
    metrics.update(scorer_metrics(samples, [row for part in all_gather(predictions) for row in part]))
    return metrics


def scorer_metrics(samples: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> dict[str, float]:
    """``<dataset>/<metric>`` for each classification dataset with predictions, via hba_core.scoring."""
    from hba_core.scoring import predictions_from_rows, score, truth_from_rows

    if not predictions:
        return {}
    predicted = {row["id"] for row in predictions}
    truth = truth_from_rows([s for s in samples if s["id"] in predicted])
    report = score(truth, [predictions_from_rows("validation", predictions, truth)])
    found = {}
    for name, entry in report["models"][0]["datasets"].items():
        if entry.get("value") is not None:
            found[f"{name}/{entry['metric']}"] = float(entry["value"])
    return found


@contextlib.contextmanager
def gather_for_save(trainer: Any) -> Iterator[None]:
    """Under ZeRO-3, gather the parameters a checkpoint holds (trainable + heads + LM head) onto every rank."""
    engine = trainer.engine
    if engine is None or engine.zero_optimization_stage() != 3:
        yield
        return
    import deepspeed

    params = [
        p for n, p in trainer.model.named_parameters() if p.requires_grad or n.startswith("heads.") or "lora_" in n
    ] + [trainer.model.lm_head().weight]
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        yield
