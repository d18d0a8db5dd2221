"""Heads-only forward: stopping at the penultimate layer vs the full forward (issue 18.4).

Heads mode and the cls loss read only ``hidden_states[-2]``; the full forward also runs the last
decoder layer, the final norm and the full-vocabulary logits. Two figures:

  cpu - one micro-batch of fixture samples (video + audio) through the mid-size fixture Thinker
        (512 wide, 8 layers): median forward time and the forward's peak RSS above the process's
        resident size before it (VmHWM reset through /proc/self/clear_refs), each way; the script
        re-executes itself with MALLOC_MMAP_THRESHOLD_=65536 so that glibc returns freed tensors to
        the system and RSS follows the live tensors (else freed heap stays resident). The tiny
        vocabulary (~400) makes the logits negligible here: the saving is about one layer of eight.
  7b  - FLOPs of the LLM on one 7B-config micro-batch (2 x 5,000 tokens), counted on the meta device
        with torch's FlopCounterMode (no weights, no memory), and the size of the logits tensor the
        full forward allocates (B x T x 152,064).

    python benchmarks/bench_heads_forward.py                 # both, ~1 min on 2 cores
    python benchmarks/bench_heads_forward.py --skip-cpu      # the 7B count only (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from hba_core.threads import configure_torch_threads


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_mib(fn) -> float:  # noqa: ANN001 - a zero-argument callable
    """Peak resident memory of ``fn()`` above the resident size before it (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _rss_kib("VmRSS")
    fn()
    return (_rss_kib("VmHWM") - before) / 1024


def cpu(samples: int, repeats: int, data: Path) -> dict[str, float]:
    from hba_core.fixtures import build_all
    from hba_core.fixtures.tiny_omni import PROFILES, build_tiny_omni
    from hba_core.model.backbone import load_processor, load_thinker
    from hba_core.model.collate import Collator, MediaSettings
    from hba_core.model.omnisapiens import model_inputs, penultimate_states

    fixtures = build_all(data, models=False)
    model_dir = build_tiny_omni(data / "mid-omni", **PROFILES["mid"])
    thinker = load_thinker(str(model_dir)).eval()
    rows = [json.loads(line) for line in fixtures.atlas.read_text().splitlines()]
    batch_rows = [r for r in rows if r["split"] == "test" and r["dataset"] == "meld_emotion"]
    batch_rows = (batch_rows * samples)[:samples]
    batch = Collator(load_processor(str(model_dir)), MediaSettings(data_root=str(fixtures.data)), targets=False)(
        batch_rows
    )
    inputs = model_inputs(batch)

    def full() -> torch.Tensor:
        return thinker(**inputs, output_hidden_states=True, use_cache=False).hidden_states[-2]

    def early() -> torch.Tensor:
        return penultimate_states(thinker, batch)

    result: dict[str, float] = {"tokens": int(inputs["input_ids"].numel())}
    with torch.no_grad():
        assert torch.equal(full(), early())
        for name, fn in (("full", full), ("early", early)):
            fn()  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            result[f"{name}_ms"] = round(1000 * statistics.median(times), 2)
            result[f"{name}_peak_mib"] = round(_peak_mib(fn), 1)
    return result


def flops_7b(batch: int, tokens: int) -> dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from hba_core.model.configs import qwen2_5_omni_7b_thinker
    from hba_core.model.omnisapiens import run_to_penultimate

    config = qwen2_5_omni_7b_thinker()
    with torch.device("meta"):
        thinker = Qwen2_5OmniThinkerForConditionalGeneration(config).to(torch.bfloat16)
    text = thinker.get_decoder()
    embeds = torch.empty(batch, tokens, config.text_config.hidden_size, device="meta", dtype=torch.bfloat16)
    positions = torch.arange(tokens, device="meta")[None, None].expand(3, batch, tokens)  # (3, B, T) M-RoPE
    with FlopCounterMode(display=False) as counter:
        logits = thinker.lm_head(text(inputs_embeds=embeds, position_ids=positions, use_cache=False)[0])
    full = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        run_to_penultimate(text, inputs_embeds=embeds, position_ids=positions)
    early = counter.get_total_flops()
    return {
        "batch": batch,
        "tokens": tokens,
        "full_tflop": round(full / 1e12, 2),
        "early_tflop": round(early / 1e12, 2),
        "saved_tflop": round((full - early) / 1e12, 2),
        "logits_gib_bf16": round(logits.numel() * logits.element_size() / 2**30, 2),
    }


def main() -> None:
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # see the module docstring: RSS that follows live tensors
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4, help="micro-batch size on CPU")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=5000, help="tokens per sample at 7B (video+audio+text)")
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()
    threads = configure_torch_threads()
    print(f"torch threads: {threads}")
    if not args.skip_cpu:
        with tempfile.TemporaryDirectory() as tmp:
            r = cpu(args.samples, args.repeats, Path(tmp))
        print(
            f"cpu mid fixture, {args.samples} samples ({r['tokens']} tokens): full {r['full_ms']} ms, "
            f"{r['full_peak_mib']} MiB peak; penultimate stop {r['early_ms']} ms, {r['early_peak_mib']} MiB peak; "
            f"speed-up {r['full_ms'] / r['early_ms']:.2f}x"
        )
    f = flops_7b(2, args.tokens)
    print(
        f"7b config, {f['batch']} x {f['tokens']} tokens, LLM forward: full {f['full_tflop']} TFLOP, "
        f"penultimate stop {f['early_tflop']} TFLOP (saves {f['saved_tflop']} TFLOP, "
        f"{100 * f['saved_tflop'] / f['full_tflop']:.1f}%); the full forward's logits alone: "
        f"{f['logits_gib_bf16']} GiB in bf16"
    )


if __name__ == "__main__":
    main()
