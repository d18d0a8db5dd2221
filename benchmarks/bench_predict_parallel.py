"""Data-parallel hba-predict on CPU: 2 torchrun processes vs 1 process on the fixture (issue 14).

Heads mode with a tiny OmniSapiens checkpoint (random LoRA and heads, written by the real save code)
over the fixture test split (64 samples of all 16 datasets, video + audio + text; --copies repeats it
under new ids). Both runs leave the thread count to hba (hba_core.threads: 1 process gets every core,
each of 2 processes half of them) and decode media in the main process (--workers 0).

Printed: wall time of each whole command (launch, imports, model load, prediction, merge) and the
prediction rate hba-predict reports (samples/s inside the sample loop, summed over ranks by the
merge), and the ratios. The ceiling on a 2-core machine is 2x for the loop; the whole command gains
less because each process pays the start-up (imports + model load, several seconds) and torchrun adds
its own launch, and one process with 2 threads already uses both cores for its larger matrix products.

    python benchmarks/bench_predict_parallel.py              # ~2-4 min on 2 shared cores
    python benchmarks/bench_predict_parallel.py --copies 4   # 256 samples: start-up matters less
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def checkpoint(omni: Path, out: Path) -> Path:
    import torch

    from hba_core.model.backbone import add_lora, load_processor, load_thinker
    from hba_core.model.checkpoint import run_config, save_checkpoint
    from hba_core.model.heads import default_label_space
    from hba_core.model.omnisapiens import OmniSapiens

    torch.manual_seed(0)
    model = OmniSapiens(add_lora(load_thinker(str(omni))), default_label_space())
    config = run_config(
        tool="hba-sft",
        stage="cls",
        base_model=str(omni),
        init=None,
        label_space=model.label_space,
        datasets=["cremad"],
        options={},
        seed=0,
    )
    save_checkpoint(model, out, config, processor=load_processor(str(omni)))
    return out


def run(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, samples/s hba-predict reported, the log)."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:6])} ... failed:\n{done.stderr[-3000:]}")
    rate = re.search(r"([0-9.]+) samples/s", done.stderr)
    return wall, float(rate.group(1)) if rate else float("nan"), done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=1, help="repeat the 64-sample test split this many times")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--fixtures", default=os.environ.get("HBA_FIXTURES"), help="fixture dir [a temp dir]")
    args = parser.parse_args()

    from hba_core.fixtures import build_all

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fixtures = build_all(Path(args.fixtures) if args.fixtures else work / "fixtures", models=True)
        rows = [json.loads(line) for line in fixtures.atlas.read_text().splitlines()]
        test = [r for r in rows if r["split"] == "test"]
        samples = work / "test.jsonl"
        samples.write_text(
            "".join(json.dumps({**r, "id": f"{r['id']}-{c}"}) + "\n" for c in range(args.copies) for r in test)
        )
        ckpt = checkpoint(fixtures.omni, work / "ckpt")
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "HBA_NUM_THREADS")}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        common = ["-m", str(ckpt), "-s", str(samples), "--data-root", str(fixtures.data)]
        common += ["--batch-size", str(args.batch_size), "--workers", "0"]
        one = run([sys.executable, "-m", "hba_tools.predict", *common, "-o", str(work / "one.jsonl")], env)
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        two = run([*launcher, "-m", "hba_tools.predict", *common, "-o", str(work / "two.jsonl")], env)
        a, b = (
            {r["id"]: r["prediction"] for r in map(json.loads, (work / f).open())} for f in ("one.jsonl", "two.jsonl")
        )
    n = len(test) * args.copies
    print(f"hba-predict heads, tiny fixture, {n} samples, batch {args.batch_size}, {os.cpu_count()} cores")
    print(f"  1 process:          {one[0]:6.1f} s wall, {one[1]:7.2f} samples/s in the loop")
    print(f"  2 torchrun ranks:   {two[0]:6.1f} s wall, {two[1]:7.2f} samples/s in the loop")
    print(f"  speed-up: {one[0] / two[0]:.2f}x whole command, {two[1] / one[1]:.2f}x prediction loop (ceiling 2x)")
    agree = sum(a[i] == b.get(i) for i in a)  # batches differ across ranks: padding may move a near tie
    print(f"  same ids: {set(a) == set(b)}; same prediction for {agree}/{len(a)} samples")


if __name__ == "__main__":
    main()
