"""Benchmark the SFT data path on CPU: samples/s of the collator for audio+video clips, decode vs processor time.

For each modality signature of the fixture atlas (face clips with audio, voiced wavs, text), times in one run:
  decode   - PyAV: frames at 2 fps (<= 32, scaled) + 16 kHz audio (hba_core.model.collate.prepare_sample)
  process  - Qwen2.5-Omni processor: chat template, Whisper features, video patches, placeholder expansion
             and the placeholder check (hba_core.model.collate.encode_batch)
in micro-batches of 2, single process (a DataLoader spreads this over its workers).

    python benchmarks/bench_collate.py                 # fixtures built under ./fixtures if absent
    python benchmarks/bench_collate.py --repeat 5 --fixtures /tmp/hba-fixtures
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from hba_core.fixtures import build_all
from hba_core.model.backbone import load_processor
from hba_core.model.collate import MediaSettings, encode_batch, prepare_sample
from hba_core.samples import iter_samples


def bench(
    samples: list[dict], processor: Any, settings: MediaSettings, repeat: int, batch: int = 2
) -> dict[str, float]:
    decode = process = 0.0
    n = 0
    for _ in range(repeat):
        for start in range(0, len(samples), batch):
            group = samples[start : start + batch]
            t0 = time.perf_counter()
            prepared = [prepare_sample(s, processor, settings, with_target=True) for s in group]
            t1 = time.perf_counter()
            encode_batch(prepared, processor, settings)
            t2 = time.perf_counter()
            decode += t1 - t0
            process += t2 - t1
            n += len(group)
    total = decode + process
    return {
        "samples": n,
        "samples_per_s": n / total,
        "decode_share": decode / total,
        "process_share": process / total,
        "ms_per_sample": 1000 * total / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", default="fixtures")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    fx = build_all(args.fixtures)
    processor = load_processor(str(fx.omni))
    settings = MediaSettings(data_root=str(fx.data))
    rows = [s for _, s in iter_samples(fx.atlas)]
    print(f"{'signature':<18} {'samples':>7} {'samples/s':>10} {'ms/sample':>10} {'decode':>7} {'process':>8}")
    for signature in ("text_video_audio", "text_audio", "text"):
        group = [s for s in rows if s["modality_signature"] == signature][:24]
        r = bench(group, processor, settings, args.repeat)
        print(
            f"{signature:<18} {r['samples']:>7} {r['samples_per_s']:>10.1f} {r['ms_per_sample']:>10.1f} "
            f"{r['decode_share']:>7.0%} {r['process_share']:>8.0%}"
        )


if __name__ == "__main__":
    main()
