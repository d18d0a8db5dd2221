"""The reference trainer's result files, turned into hba predictions for ``hba-score``.

The reference repository (MIT-MI/human_behavior_atlas, ``training/sft``) writes, at each validation:

- classification: ``cls_val_generations_<step>.json`` (``evaluate/detailed_multi_task_evaluation.py``,
  ``compute_metrics_by_dataset``) = ``{"predictions": [int], "ground_truths": [int], "datasets": [str]}``,
  indices into the 25-class unified label map (``label_maps/unified_label_map.json``: domain by domain,
  label by label, as ``hba_core.registry`` numbers them), in the evaluation loader's order, no ids;
- QA: ``<split>_qa_preds_step_<step>.json`` (``trainer/qa_trainer.py``) = ``[{"dataset", "pred", "gold"}]``.

Neither names its samples, so entries are matched to samples **by dataset and position**: the k-th
entry of dataset D is the k-th sample of D in the sample file given (the split the reference evaluated,
in its order). Every match is checked: the entry's ground truth must be that sample's label (QA: its
answer), and each dataset must have as many entries as samples. Any disagreement is one clear error
naming the entry's position - never a silent shift onto the wrong samples.

>>> from hba_core import registry
>>> registry.global_classes()[registry.dataset("cremad").task.domain.global_index("sad")]
('emotion', 'sad')
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from hba_core import registry
from hba_core.errors import InputError
from hba_core.jsonl import PathLike
from hba_core.samples import iter_samples


def load_reference_results(path: PathLike) -> tuple[str, list[dict[str, Any]]]:
    """``(kind, entries)``: ``"cls"`` entries ``{dataset, prediction, ground_truth}`` (global indices) or
    ``"qa"`` entries ``{dataset, prediction, ground_truth}`` (texts), in file order."""
    where = str(path)
    try:
        data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise InputError(where, "no such file") from None
    except IsADirectoryError:
        raise InputError(where, "is a directory; give a cls_val_generations_<step>.json or QA preds file") from None
    except orjson.JSONDecodeError as exc:
        raise InputError(where, f"not valid JSON ({exc})") from None
    if isinstance(data, dict) and {"predictions", "ground_truths", "datasets"} <= set(data):
        columns = [data["predictions"], data["ground_truths"], data["datasets"]]
        if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
            raise InputError(where, "predictions, ground_truths and datasets must be lists of one length")
        entries = []
        for k, (p, t, d) in enumerate(zip(*columns, strict=True)):
            if not (isinstance(p, int) and isinstance(t, int) and isinstance(d, str)):
                raise InputError(f"{where}: entry {k}", "expected integer prediction/ground truth and a dataset name")
            entries.append({"dataset": d, "prediction": p, "ground_truth": t})
        return "cls", entries
    if isinstance(data, list) and all(isinstance(e, dict) and {"dataset", "pred", "gold"} <= set(e) for e in data):
        return "qa", [{"dataset": e["dataset"], "prediction": e["pred"], "ground_truth": e["gold"]} for e in data]
    raise InputError(
        where,
        "not a reference result file: expected cls_val_generations_<step>.json "
        '({"predictions", "ground_truths", "datasets"}) or a QA file ([{"dataset", "pred", "gold"}])',
    )


def _truth_of(sample: dict[str, Any], kind: str) -> Any:
    ds = registry.dataset(sample["dataset"])
    if kind == "qa":
        return str(sample.get("answer", "")).strip()
    label = sample.get("class_label") or sample.get("answer")
    if ds.task.domain is None or label not in ds.task.domain.labels:
        return None
    return ds.task.domain.global_index(label)


def reference_predictions(results: PathLike, samples: PathLike, *, model: str | None = None) -> list[dict[str, Any]]:
    """hba prediction rows (``id, prediction, dataset``, and ``model``) for one reference result file.

    All entries are checked before any row is returned, so a caller writes all of them or none.

    Raises :class:`InputError` naming the entry (its position in the file and within its dataset) when
    its ground truth is not the matched sample's, or when a dataset's entries and samples differ in number.
    """
    kind, entries = load_reference_results(results)
    wanted = {e["dataset"] for e in entries}
    for name in sorted(wanted):
        ds = registry.dataset(name)  # unknown -> the valid names
        if ds.is_free_text != (kind == "qa"):
            raise InputError(
                str(results),
                f"dataset {name} is {'a free-text' if ds.is_free_text else 'a classification'} task "
                f"but this is a {kind} result file",
            )
    by_dataset: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, sample in iter_samples(samples):
        if sample.get("dataset") in wanted:
            by_dataset[sample["dataset"]].append(sample)
    seen: dict[str, int] = defaultdict(int)
    counts = defaultdict(int)
    for e in entries:
        counts[e["dataset"]] += 1
    for name, n in counts.items():
        if n != len(by_dataset[name]):
            raise InputError(
                str(results),
                f"{n} {name} entries but {len(by_dataset[name])} {name} samples in {samples}; "
                "give the sample file of the split the reference evaluated (same rows, same order)",
            )
    classes = registry.global_classes()
    rows = []
    for k, e in enumerate(entries):
        name = e["dataset"]
        position = seen[name]
        seen[name] += 1
        sample = by_dataset[name][position]
        truth = _truth_of(sample, kind)
        given = e["ground_truth"] if kind == "cls" else str(e["ground_truth"]).strip()
        if given != truth:
            shown = classes[given][1] if kind == "cls" and 0 <= given < len(classes) else given
            raise InputError(
                f"{results}: entry {k}",
                f"ground truth {shown!r} but {name} sample {position + 1} ({sample['id']}) has "
                f"{sample.get('class_label') or sample.get('answer')!r}: the entries are not in this file's "
                "sample order (or another split); nothing was written",
            )
        if kind == "cls":
            if not 0 <= e["prediction"] < len(classes):
                raise InputError(
                    f"{results}: entry {k}",
                    f"prediction {e['prediction']} is not a global class index (0-{len(classes) - 1})",
                )
            prediction = classes[e["prediction"]][1]
        else:
            prediction = e["prediction"]
        row = {"id": sample["id"], "prediction": prediction, "dataset": name}
        if model:
            row["model"] = model
        rows.append(row)
    return rows
