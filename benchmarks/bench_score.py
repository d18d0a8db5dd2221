"""Benchmark hba-score: 1,000,000 predictions over all 16 datasets, end to end, against a plain Python loop.

Writes an official-style samples file (no ids: they are derived from content, as for the release)
and a predictions file into a temp dir, then times in one run:
  parse   - reading both JSONL files with orjson and joining them by id (hba_core.scoring loaders)
  score   - label extraction + the unified metrics, vectorised (hba_core.scoring.score)
  loop    - the same metrics as a straightforward per-class Python loop over the same parsed labels
and checks that both give the same numbers.

    python benchmarks/bench_score.py              # 1,000,000 predictions
    python benchmarks/bench_score.py --n 100000   # quicker
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from hba_core import registry
from hba_core.answers import extract_label
from hba_core.samples import sample_id
from hba_core.scoring import attach_judgments, load_predictions, load_truth, score

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Write the generated files here instead of a temp dir.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        truth_path, ids_path, preds_path = generate(root, args.n)
        gen_s = time.perf_counter() - t0
        sizes = (truth_path.stat().st_size + preds_path.stat().st_size) / 1e6
        stages: list[tuple[str, float, float]] = []

        def timed(label: str, fn):  # noqa: ANN001
            wall, cpu = time.perf_counter(), time.process_time()
            result = fn()
            stages.append((label, time.perf_counter() - wall, time.process_time() - cpu))
            return result

        timed("truth, ids given", lambda: load_truth(ids_path))
        truth = timed("truth, official (ids derived)", lambda: load_truth(truth_path))
        preds = timed("predictions + join by id", lambda: load_predictions(preds_path, "bench", truth))
        free = [i for i, d in enumerate(truth.dataset) if registry.dataset(truth.names[d]).is_free_text]
        attach_judgments(
            preds,
            [(k, {"id": truth.ids[i], "status": "ok", "correct": k % 3 > 0}) for k, i in enumerate(free, 1)],
            truth,
            "judged",
        )
        report = timed("score, vectorised (extract + metrics)", lambda: score(truth, [preds]))
        reference = timed("score, per-class Python loop", lambda: loop_metrics(truth, preds))

    ours = report["models"][0]["datasets"]
    worst = max(abs(ours[name]["value"] - value) for name, value in reference.items())
    assert worst < 1e-9, f"vectorised and loop metrics differ by {worst}"
    assert preds.counts["matched"] == args.n
    t = {label: (wall, cpu) for label, wall, cpu in stages}
    official = [
        sum(
            t[k][j]
            for k in (
                "truth, official (ids derived)",
                "predictions + join by id",
                "score, vectorised (extract + metrics)",
            )
        )
        for j in (0, 1)
    ]
    given = [official[j] - t["truth, official (ids derived)"][j] + t["truth, ids given"][j] for j in (0, 1)]
    stages += [("end to end, official truth", *official), ("end to end, truth with ids", *given)]
    print(
        f"hba-score benchmark: {args.n:,} predictions over {len(ours)} datasets ({sizes:.0f} MB of JSONL; "
        f"generated in {gen_s:.1f} s)"
    )
    print(f"{'stage':<40}{'wall s':>9}{'cpu s':>9}")
    for label, wall, cpu in stages:
        print(f"{label:<40}{wall:>9.2f}{cpu:>9.2f}")
    loop, vec = t["score, per-class Python loop"], t["score, vectorised (extract + metrics)"]
    print(f"{'loop / vectorised scoring':<40}{loop[0] / vec[0]:>8.1f}x{loop[1] / vec[1]:>8.1f}x")
    print(f"max |vectorised - loop| over datasets: {worst:.1e}")


if __name__ == "__main__":
    main()
