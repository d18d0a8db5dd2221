"""The score report: every model's per-dataset and per-task scores, bootstrap intervals and paired comparisons.

Resampling is exact and fast: resampling N samples only changes the counts per confusion cell,
drawn as Multinomial(N, cell shares) (see :mod:`hba_core.metrics`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hba_core import registry
from hba_core.errors import InputError
from hba_core.metrics import (
    METRICS,
    bootstrap_confusions,
    confusion,
    paired_bootstrap_confusions,
    paired_p_value,
    percentile_ci,
)
from hba_core.scoring.dataset import PROTOCOLS, DatasetScore, score_dataset
from hba_core.scoring.join import Predictions, Truth


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _task_means(per_dataset: dict[str, DatasetScore], reps: dict[str, np.ndarray] | None) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    for code, t in registry.get().tasks.items():
        names = [d.name for d in registry.datasets_of_task(code) if d.name in per_dataset]
        defined = [n for n in names if per_dataset[n].report["value"] is not None]
        entry: dict[str, Any] = {"metric": t.metric.name, "datasets": defined, "notes": []}
        entry["value"] = float(np.mean([per_dataset[n].report["value"] for n in defined])) if defined else None
        if defined and all(
            "answered" in per_dataset[n].report for n in defined
        ):  # so a floor is never shown as a score
            entry["answered"] = sum(per_dataset[n].report["answered"] for n in defined)
            entry["samples"] = sum(per_dataset[n].report["samples"] for n in defined)
        if not defined:
            entry["notes"].append("no dataset of this task has a defined score")
        elif len(defined) < len(registry.datasets_of_task(code)):
            left = [d.name for d in registry.datasets_of_task(code) if d.name not in defined]
            entry["notes"].append(f"mean over {len(defined)} datasets; not scored: {', '.join(left)}")
        if reps is not None:
            stack = [reps[n] for n in defined]
            entry["ci"] = percentile_ci(np.nanmean(np.stack(stack), axis=0)) if stack else None
        tasks[code] = entry
    return tasks


def score_model(
    truth: Truth,
    preds: Predictions,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    model_index: int = 0,
    examples: int = 3,
    protocol: str = "paper",
) -> tuple[dict[str, Any], dict[str, DatasetScore]]:
    """One model's report section (counts, per dataset, per task) and its per-dataset scores."""
    present = sorted(set(np.unique(truth.dataset).tolist()))
    per_dataset = {truth.names[d]: score_dataset(truth, preds, d, examples, protocol) for d in present}
    reps: dict[str, np.ndarray] | None = None
    if bootstrap:
        reps = {}
        for d, (name, s) in zip(present, per_dataset.items()):
            cm = confusion(s.gold, s.pred, s.k)
            reps[name] = METRICS[s.metric](bootstrap_confusions(cm, bootstrap, _rng(seed, model_index, d)))
            s.report["ci"] = percentile_ci(reps[name]) if s.report["value"] is not None else None
    counts = dict(preds.counts)
    counts["unparseable"] = sum(s.report.get("unparseable", 0) for s in per_dataset.values())
    counts["outside_labels"] = sum(s.report.get("outside_labels", 0) for s in per_dataset.values())
    section = {
        "name": preds.name,
        "source": preds.source,
        "counts": counts,
        "judgments": preds.judgment_counts,
        "problems": preds.problems,
        "datasets": {n: s.report for n, s in per_dataset.items()},
        "tasks": _task_means(per_dataset, reps),
    }
    return section, per_dataset


def compare_models(
    a: dict[str, DatasetScore], b: dict[str, DatasetScore], replicates: int, seed: int, level: float = 0.95
) -> dict[str, Any]:
    """Paired bootstrap of A - B on the same resampled samples, per dataset and per task (mean over datasets)."""
    datasets: dict[str, Any] = {}
    deltas: dict[str, np.ndarray] = {}
    for d, name in enumerate(a):
        sa, sb = a[name], b[name]
        if sa.report["value"] is None or sb.report["value"] is None:
            datasets[name] = {"delta": None, "ci": None, "p_value": None, "notes": ["undefined for one model"]}
            continue
        assert np.array_equal(sa.gold, sb.gold), "both models are scored on the same truth"
        cm_a, cm_b = paired_bootstrap_confusions(sa.gold, sa.pred, sb.pred, sa.k, replicates, _rng(seed, 99, d))
        fn = METRICS[sa.metric]
        deltas[name] = fn(cm_a) - fn(cm_b)
        datasets[name] = {
            "delta": sa.report["value"] - sb.report["value"],
            "ci": percentile_ci(deltas[name], level),
            "p_value": paired_p_value(deltas[name]),
        }
    tasks: dict[str, Any] = {}
    for code in registry.get().tasks:
        names = [d.name for d in registry.datasets_of_task(code) if d.name in deltas]
        if not names:
            continue
        stack = np.nanmean(np.stack([deltas[n] for n in names]), axis=0)
        tasks[code] = {
            "delta": float(np.mean([datasets[n]["delta"] for n in names])),
            "datasets": names,
            "ci": percentile_ci(stack, level),
            "p_value": paired_p_value(stack),
        }
    return {"datasets": datasets, "tasks": tasks}


def score(
    truth: Truth,
    models: list[Predictions],
    *,
    bootstrap: int = 0,
    seed: int = 0,
    compare: tuple[str, str] | None = None,
    examples: int = 3,
    protocol: str = "paper",
) -> dict[str, Any]:
    """The full report (see schemas/score-report.schema.json): every model, optional intervals and a paired test.

    ``protocol`` is ``paper`` (the paper's definitions) or ``reference`` (the reference code's numbers);
    see :mod:`hba_core.scoring.dataset`.
    """
    if protocol not in PROTOCOLS:
        raise InputError("--protocol", f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InputError("--name", f"model names must be unique, got {', '.join(names)}")
    sections, scores = [], {}
    for i, preds in enumerate(models):
        section, per_dataset = score_model(
            truth, preds, bootstrap=bootstrap, seed=seed, model_index=i, examples=examples, protocol=protocol
        )
        sections.append(section)
        scores[preds.name] = per_dataset
    counts = {n: int((truth.dataset == d).sum()) for d, n in enumerate(truth.names) if (truth.dataset == d).any()}
    report: dict[str, Any] = {
        "version": 1,
        "protocol": protocol,
        "truth": {"path": truth.path, "samples": len(truth.ids), "datasets": counts},
        "bootstrap": {"replicates": bootstrap, "seed": seed, "confidence": 0.95} if bootstrap else None,
        "models": sections,
        "comparisons": [],
    }
    if compare is not None:
        for side in compare:
            if side not in scores:
                raise InputError("--compare", f"no model named {side!r}; models: {', '.join(names)}")
        replicates = bootstrap or 1000
        result = compare_models(scores[compare[0]], scores[compare[1]], replicates, seed)
        report["comparisons"].append({"a": compare[0], "b": compare[1], "replicates": replicates, **result})
    return report
