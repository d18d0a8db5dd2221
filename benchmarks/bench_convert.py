"""Benchmark hba-convert: build the largest dataset (CMU-MOSEI), a media-checked build, stats/select/import/export.

Runs on the real annotation files in ../shared/annotations when present (MOSEI, MELD), else on
synthetic files of the same format and size. Media are empty files (only existence is checked).

    python benchmarks/bench_convert.py
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import time
from pathlib import Path

from hba_core.convert import Reject, build_source
from hba_core.convert.release import RELEASE_FILES, export_release, import_release
from hba_core.convert.selection import selector
from hba_core.convert.stats import table7
from hba_core.jsonl import atomic_output, dumps_line, iter_jsonl

ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "annotations"


def synthetic_mosei(root: Path, n: int = 23259) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "CMU_MOSEI_Labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["", "file", "index", "start", "end", "label2a", "label2b", "label6", "label7", "split"])
        for i in range(n):
            w.writerow([i, f"vid{i // 10}", i % 10, 0.0, 1.0, 1, 1, i % 6, i % 7 - 3, i % 3])
    return root


def build_to(source: str, raw: Path, out: Path, check_media: bool) -> tuple[int, int, float]:
    started = time.perf_counter()
    n = rejects = 0
    with atomic_output(out) as sink:
        for item in build_source(source, raw, check_media=check_media):
            if isinstance(item, Reject):
                rejects += 1
            else:
                sink.write(dumps_line(item))
                n += 1
    return n, rejects, time.perf_counter() - started


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    try:
        mosei = ANNOTATIONS / "mosei" if (ANNOTATIONS / "mosei").is_dir() else synthetic_mosei(tmp / "mosei")
        rows: list[tuple[str, int, float]] = []
        n, _, secs = build_to("mosei", mosei, tmp / "mosei.jsonl", check_media=False)
        rows.append(("build mosei (largest; 2 datasets), --no-media", n, secs))

        meld = tmp / "meld"
        meld.mkdir()
        src = ANNOTATIONS / "meld"
        if src.is_dir():
            for name in ("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv"):
                (meld / name).symlink_to(src / name)  # linked, never copied
            n, _, secs = build_to("meld", meld, tmp / "meld-nomedia.jsonl", check_media=False)
            rows.append(("build meld, --no-media", n, secs))
            for item in build_source("meld", meld, check_media=False):  # create the clips as empty files
                if isinstance(item, dict):
                    clip = meld / item["videos"][0].split("/", 1)[1]
                    clip.parent.mkdir(parents=True, exist_ok=True)
                    clip.touch()
            n, _, secs = build_to("meld", meld, tmp / "meld.jsonl", check_media=True)
            rows.append(("build meld, media checked", n, secs))

        path = tmp / "mosei.jsonl"
        started = time.perf_counter()
        stats = table7(row for _, row in iter_jsonl(path))
        rows.append(("stats", stats["combined"]["total"], time.perf_counter() - started))
        keep = selector(splits=["train"], exclude=["mosei_senti"])
        started = time.perf_counter()
        kept = sum(1 for _, row in iter_jsonl(path) if keep(row))
        rows.append(("select --split train --exclude mosei_senti", kept, time.perf_counter() - started))
        started = time.perf_counter()
        counts = export_release((row for _, row in iter_jsonl(path)), tmp / "release")
        rows.append(("export (official layout)", sum(counts.values()), time.perf_counter() - started))
        started = time.perf_counter()
        n = sum(1 for _ in import_release(tmp / "release"))
        rows.append(("import (final_v8_* JSONL)", n, time.perf_counter() - started))
        assert all((tmp / "release" / f).exists() for f in RELEASE_FILES.values())

        print(f"{'step':50} {'samples':>8} {'seconds':>8} {'samples/s':>10}")
        for name, count, secs in rows:
            print(f"{name:50} {count:8d} {secs:8.2f} {count / secs:10.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
