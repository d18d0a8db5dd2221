"""Benchmark the Atlas v2 Parquet path against JSONL + files: scoring truth, and lazy media decode.

1. score truth - ``hba_core.scoring.load_truth`` on the v2 test split's size (18,204 rows) read straight from a
   shard whose binary columns are heavy (``--media-kb`` of bytes per row in videos/audios/ext_*), against the
   same rows as JSONL. Column projection means the shard path never reads a media byte: ratio <= 1.5x.
2. collate decode - ``hba_core.model.collate.prepare_sample`` (PyAV decode, the chat text) on the fixture clips,
   media read lazily from a shard's cells vs from files under the data root: ratio <= 1.2x.

torch is pinned to one thread. Prints the times and both ratios; exits 1 when a ratio is over its bound.

    python benchmarks/bench_release.py --fixtures /tmp/hba-fixtures
    python benchmarks/bench_release.py --rows 5000 --media-kb 64   # quicker / heavier
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from hba_core import registry
from hba_core.fixtures import build_all
from hba_core.fixtures.shards import write_table, write_v2_shards
from hba_core.jsonl import write_jsonl
from hba_core.samples import iter_samples
from hba_core.scoring import load_truth

SCORE_BOUND, DECODE_BOUND = 1.5, 1.2


def truth_rows(n: int, media_kb: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``n`` classification rows over every labelled dataset: (shard rows with bytes, the same rows as JSONL)."""
    rng = np.random.default_rng(seed)
    names = [d for d in registry.get().datasets.values() if not d.is_free_text]
    blob = rng.integers(0, 256, media_kb * 1024, dtype=np.uint8).tobytes()
    shard_rows, json_rows = [], []
    for i in range(n):
        ds = names[i % len(names)]
        label = ds.labels[int(rng.integers(len(ds.labels)))]
        text = {
            "problem": f"<video>\n<audio>\nClip {i}. What is the label? Answer with one of: {', '.join(ds.labels)}",
            "answer": label,
            "dataset": ds.name,
            "modality_signature": "text_video_audio",
            "task": ds.release_task,
            "class_label": label,
        }
        # Distinct bytes per row (a row number up front) so Parquet cannot dictionary-encode the media away.
        cell = i.to_bytes(4, "little") + blob
        third = len(cell) // 3
        shard_rows.append(
            {
                **text,
                "images": [],
                "videos": [cell[:third]],
                "audios": [cell[third : 2 * third]],
                "ext_video_feats": [cell[2 * third :]],
                "ext_audio_feats": [],
            }
        )
        json_rows.append({**text, "videos": [f"v/{i}.mp4"], "audios": [f"a/{i}.wav"]})
    return shard_rows, json_rows


def best_of(fn, repeat: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_score(root: Path, rows: int, media_kb: int, repeat: int) -> float:
    shard_rows, json_rows = truth_rows(rows, media_kb)
    shard = write_table(root / "data" / "test-00000-of-00001.parquet", shard_rows, row_group_size=256)
    jsonl = root / "final_v8_test_cleaned.jsonl"
    write_jsonl(jsonl, [{k: v for k, v in r.items()} for r in json_rows])
    del shard_rows
    size_mb = shard.stat().st_size / 2**20
    t_shard = best_of(lambda: load_truth(shard), repeat)
    t_json = best_of(lambda: load_truth(jsonl), repeat)
    ratio = t_shard / t_json
    print(f"score truth, {rows} rows: shard ({size_mb:.0f} MB, media columns not read) {t_shard:.3f} s, ")
    print(f"  JSONL {t_json:.3f} s -> ratio {ratio:.2f}x (bound {SCORE_BOUND}x)")
    return ratio


def bench_decode(root: Path, fixtures: Path, repeat: int) -> float:
    from hba_core.model.backbone import load_processor
    from hba_core.model.collate import MediaSettings, prepare_sample

    fx = build_all(fixtures)
    processor = load_processor(str(fx.omni))
    shards = write_v2_shards(root / "v2", fx.atlas, fx.data, train_shards=1)
    from_files = [s for _, s in iter_samples(fx.atlas) if s["split"] == "test" and s["modality_signature"] != "text"]
    from_shard = [s for _, s in iter_samples(shards["test"][0], media=True) if s["modality_signature"] != "text"]
    assert len(from_files) == len(from_shard), (len(from_files), len(from_shard))
    settings = MediaSettings(data_root=str(fx.data))

    def run(samples: list[dict]) -> None:
        for s in samples:
            prepare_sample(s, processor, settings, with_target=True)

    run(from_shard[:2])  # warm-up: PyAV and the processor's first calls
    t_shard = best_of(lambda: run(from_shard), repeat)
    t_files = best_of(lambda: run(from_files), repeat)
    ratio = t_shard / t_files
    n = len(from_files)
    print(f"collate decode, {n} audio/video samples: shard cells {t_shard:.3f} s, files {t_files:.3f} s")
    print(f"  -> ratio {ratio:.2f}x (bound {DECODE_BOUND}x)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default=os.environ.get("HBA_FIXTURES", "fixtures"))
    parser.add_argument("--rows", type=int, default=18_204, help="rows of the truth (v2 test split: 18,204)")
    parser.add_argument("--media-kb", type=int, default=48, help="bytes of media per shard row, in KiB")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        score_ratio = bench_score(Path(tmp), args.rows, args.media_kb, args.repeat)
        decode_ratio = bench_decode(Path(tmp), Path(args.fixtures), args.repeat)
    if score_ratio > SCORE_BOUND or decode_ratio > DECODE_BOUND:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
