"""Benchmark hba-score: 1,000,000 predictions over all 16 datasets, end to end, against a plain Python loop.

Writes an official-style samples file (no ids: they are derived from content, as for the release)
and a predictions file into a temp dir, then times in one run, for the truth with ids and without:
  floor      - parsing the truth and the predictions with orjson in one process, nothing else
  end to end - what hba-score does (hba_core.scoring.load_all, judgments, score), in one process and
               with the truth read by worker processes; printed as a ratio to the floor
  score/loop - the vectorised metrics against a straightforward per-class Python loop (same numbers)
with torch/numpy threads pinned to 1, and the load average before and after (the machine is shared).

    python benchmarks/bench_score.py              # 1,000,000 predictions
    python benchmarks/bench_score.py --n 100000   # quicker
    python benchmarks/bench_score.py --keep /tmp/bench-score   # reuse the generated files
"""

from __future__ import annotations

import os

for _var in (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
):  # before numpy: measure code, not contention
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from hba_core import registry  # noqa: E402
from hba_core.answers import extract_label  # noqa: E402
from hba_core.samples import sample_id  # noqa: E402
from hba_core.scoring import attach_judgments, load_all, score  # noqa: E402

PROBLEM = (
    "<video>\n<audio>\nTranscript: {i} and so I told him that it was fine, really, it was fine. "
    "The above is a video with its audio and transcript. What is the label of the speaker? "
    "Answer with one of the following: {options}"
)


def generate(root: Path, n: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """``n`` samples spread over all 16 datasets and one prediction each (70% right, 5% unparseable prose).

    The truth is written twice: as in the official release (no ids: derived from content) and with ids.
    """
    rng = np.random.default_rng(seed)
    datasets = list(registry.get().datasets.values())
    which = rng.integers(len(datasets), size=n)
    right = rng.random(n) < 0.7
    junk = rng.random(n) < 0.05
    truth, with_ids, preds = root / "truth.jsonl", root / "truth_ids.jsonl", root / "preds.jsonl"
    with open(truth, "wb") as t, open(with_ids, "wb") as t_ids, open(preds, "wb") as p:
        for i in range(n):
            ds = datasets[which[i]]
            if ds.is_free_text:
                label, answer = None, "Because she is pleased to see her friend."
            else:
                label = answer = ds.labels[rng.integers(len(ds.labels))]
            row = {
                "problem": PROBLEM.format(i=i, options=", ".join(ds.labels)),
                "answer": answer,
                "images": [],
                "videos": [f"video/{i}.mp4"],
                "audios": [f"audio/{i}.wav"],
                "dataset": ds.name,
                "texts": [],
                "modality_signature": "text_video_audio",
                "ext_video_feats": [],
                "ext_audio_feats": [],
                "task": ds.release_task,
                "class_label": label,
            }
            t.write(orjson.dumps(row) + b"\n")
            sid = sample_id(row)
            t_ids.write(orjson.dumps({"id": sid, **row}) + b"\n")
            if junk[i]:
                prediction = "I cannot tell from this clip."
            elif ds.is_free_text or right[i]:
                prediction = answer if i % 2 else f"<think>hmm</think> The answer is \\boxed{{{answer}}}"
            else:
                prediction = ds.labels[rng.integers(len(ds.labels))]
            p.write(orjson.dumps({"id": sid, "prediction": prediction}) + b"\n")
    return truth, with_ids, preds


# ---------------------------------------------------------------- the straightforward reference
def loop_metrics(truth, preds) -> dict[str, float | None]:  # noqa: ANN001
    """Per dataset, per class, one Python pass over the samples: the textbook formulas, no numpy."""
    out: dict[str, float | None] = {}
    by_dataset: dict[str, list[tuple[str, str | None]]] = {}
    for i in range(len(truth.ids)):
        name = truth.names[truth.dataset[i]]
        ds = registry.dataset(name)
        if ds.is_free_text:
            by_dataset.setdefault(name, []).append(("TRUE", "TRUE" if preds.judgments[i] == 1 else None))
            continue
        text = preds.texts[i]
        by_dataset.setdefault(name, []).append((ds.labels[truth.gold[i]], extract_label(text, name)))
    for name, pairs in by_dataset.items():
        ds = registry.dataset(name)
        metric = ds.task.metric.name
        if metric == "judge_accuracy":
            out[name] = sum(1 for _, p in pairs if p == "TRUE") / len(pairs)
            continue
        if metric == "binary_weighted_f1":
            middle = len(ds.task.domain.labels) // 2
            polarity = {
                lab: ("neg" if ds.task.domain.labels.index(lab) < middle else "pos")
                for lab in ds.labels
                if ds.task.domain.labels.index(lab) != middle
            }
            pairs = [(polarity[g], polarity.get(p)) for g, p in pairs if g in polarity]
        classes = sorted({g for g, _ in pairs})
        total = len(pairs)
        if metric == "mean_weighted_accuracy":
            scores = []
            for c in classes:
                tp = sum(1 for g, p in pairs if g == c and p == c)
                pos = sum(1 for g, _ in pairs if g == c)
                tn = sum(1 for g, p in pairs if g != c and p != c)
                neg = total - pos
                scores.append(0.5 * tp / pos + 0.5 * tn / neg if neg else tp / pos)
            out[name] = sum(scores) / len(scores)
        else:
            f1w = 0.0
            for c in classes:
                tp = sum(1 for g, p in pairs if g == c and p == c)
                fp = sum(1 for g, p in pairs if g != c and p == c)
                fn = sum(1 for g, p in pairs if g == c and p != c)
                f1w += (tp + fn) / total * (2 * tp / (2 * tp + fp + fn))
            out[name] = f1w
    return out


def parse_floor(*paths: Path) -> None:
    """The floor: every line of every file parsed with orjson in one process, nothing else."""
    loads = orjson.loads
    for path in paths:
        with open(path, "rb") as fh:
            for line in fh:
                loads(line)


def end_to_end(truth_path: Path, preds_path: Path, workers: int) -> tuple[Any, Any]:
    """What hba-score does: truth and predictions read (in parallel with workers > 1), judgments, the report."""
    truth, (preds,) = load_all(truth_path, [(preds_path, "bench")], workers=workers)
    free = np.flatnonzero([registry.dataset(n).is_free_text for n in truth.names])
    rows = np.flatnonzero(np.isin(truth.dataset, free))
    judged = [(k, {"id": truth.ids[i], "status": "ok", "correct": k % 3 > 0}) for k, i in enumerate(rows, 1)]
    attach_judgments(preds, judged, truth, "judged")
    return truth, preds, score(truth, [preds])


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the truth reader's workers)."""
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Write the generated files here (reused when present).")
    parser.add_argument("--workers", type=int, default=2, help="Processes of the parallel truth reader run.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        paths = root / "truth.jsonl", root / "truth_ids.jsonl", root / "preds.jsonl"
        if not all(p.exists() for p in paths):
            generate(root, args.n)
        truth_path, ids_path, preds_path = paths
        gen_s = time.perf_counter() - t0
        sizes = (truth_path.stat().st_size + preds_path.stat().st_size) / 1e6
        load_before = os.getloadavg()
        stages: dict[str, tuple[float, float]] = {}

        def timed(label: str, fn):  # noqa: ANN001
            wall, cpu = time.perf_counter(), _cpu()
            result = fn()
            stages[label] = (time.perf_counter() - wall, _cpu() - cpu)
            return result

        for form, path in (("with ids", ids_path), ("official", truth_path)):
            timed(f"floor: orjson parse, truth {form} + preds", lambda p=path: parse_floor(p, preds_path))
            timed(f"end to end, truth {form}", lambda p=path: end_to_end(p, preds_path, 1))
            if args.workers > 1:
                timed(f"end to end, truth {form}, {args.workers} workers", lambda p=path: end_to_end(p, preds_path, 2))
        truth, preds, report = end_to_end(ids_path, preds_path, 1)
        timed("score, vectorised (extract + metrics)", lambda: score(truth, [preds]))
        reference = timed("score, per-class Python loop", lambda: loop_metrics(truth, preds))
        load_after = os.getloadavg()

    ours = report["models"][0]["datasets"]
    worst = max(abs(ours[name]["value"] - value) for name, value in reference.items())
    assert worst < 1e-9, f"vectorised and loop metrics differ by {worst}"
    assert preds.counts["matched"] == len(truth.ids)
    print(
        f"hba-score benchmark: {len(truth.ids):,} predictions over {len(ours)} datasets ({sizes:.0f} MB of JSONL; "
        f"ready in {gen_s:.1f} s); {len(os.sched_getaffinity(0))} usable cores, load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; OMP/MKL threads pinned to 1"
    )
    print(f"{'stage':<52}{'wall s':>9}{'cpu s':>9}")
    for label, (wall, cpu) in stages.items():
        print(f"{label:<52}{wall:>9.2f}{cpu:>9.2f}")
    for label in stages:
        if label.startswith("end to end"):
            form = "with ids" if "with ids" in label else "official"
            floor = stages[f"floor: orjson parse, truth {form} + preds"]
            ratio = f"{stages[label][0] / floor[0]:>8.2f}x{stages[label][1] / floor[1]:>8.2f}x"
            print(f"{label + ' / floor':<52}{ratio}")
    loop, vec = stages["score, per-class Python loop"], stages["score, vectorised (extract + metrics)"]
    print(f"{'loop / vectorised scoring':<52}{loop[0] / vec[0]:>8.1f}x{loop[1] / vec[1]:>8.1f}x")
    print(f"max |vectorised - loop| over datasets: {worst:.1e}")


if __name__ == "__main__":
    main()
