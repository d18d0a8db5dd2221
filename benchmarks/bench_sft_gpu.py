"""Benchmark OmniSapiens SFT and heads-mode prediction on a GPU: the full-size 7B Thinker with random weights.

Speed does not depend on the weights, so nothing is downloaded: the Thinker is built from the published
Qwen2.5-Omni-7B Thinker configuration (:func:`hba_core.model.configs.qwen2_5_omni_7b_thinker`: 8.93 B
parameters; transformers' bare ``Qwen2_5OmniThinkerConfig()`` would give an 11.34 B model with a
3,584-wide vision tower). Each micro-batch holds 2 samples shaped like a
video+audio Atlas clip at the SFT defaults: 32 frames at 448x448 (= 16 temporal x 16 x 16 merged patches
= 4096 video tokens), 30 s of audio (750 audio tokens) and ~150 text tokens. Measured, per dtype:

  train   - LoRA (r=32) + task heads + gradient checkpointing, AdamW step every micro-batch:
            samples/s, tokens/s, MFU, peak memory
  predict - heads mode (no grad, pooled h_penult -> heads): samples/s

MFU counts model FLOPs as 6 x parameters x tokens for each tower (LLM on all tokens, vision encoder on
its patches, audio encoder on its frames), without the recomputation of gradient checkpointing, against
the GPU's dense bf16 peak (--peak-tflops, default 989 = H100 SXM; use 989 for H200 too).

    python benchmarks/bench_sft_gpu.py                       # bf16 and fp32, 10 timed steps each
    python benchmarks/bench_sft_gpu.py --dtypes bfloat16 --steps 20
    python benchmarks/bench_sft_gpu.py --tiny --device cpu   # smoke test of this script on the tiny fixture
    python benchmarks/bench_sft_gpu.py --reduced --device cpu --dtypes float32 --steps 1 --warmup 0
                                                            # the 7B's structure at toy sizes (tests)
"""

from __future__ import annotations

import argparse
import time

import torch

from hba_core.model.backbone import add_lora, build_random_thinker
from hba_core.model.collate import Batch
from hba_core.model.heads import default_label_space
from hba_core.model.omnisapiens import OmniSapiens
from hba_core.model.train import set_trainable


def synthetic_batch(config, *, batch: int, frames: int, side: int, audio_seconds: float, text: int) -> Batch:  # noqa: ANN001
    """Thinker inputs with separate video and audio placeholders whose counts match the encoders' outputs."""
    vision = config.vision_config
    patch, merge, temporal = vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
    grid = torch.tensor([[frames // temporal, side // patch, side // patch]] * batch)  # (B, 3)
    n_video = int(grid[0].prod()) // (merge * merge)
    mel = int(audio_seconds * 100)
    n_audio = ((mel - 1) // 2 + 1 - 2) // 2 + 1
    vocab = config.text_config.vocab_size
    gen = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(batch):
        words = torch.randint(1000, 100000, (text,), generator=gen)
        row = torch.cat(
            [
                words[: text // 3],
                torch.tensor([config.vision_start_token_id]),
                torch.full((n_video,), config.video_token_index),
                torch.tensor([config.vision_end_token_id]),
                torch.tensor([config.audio_start_token_id]),
                torch.full((n_audio,), config.audio_token_index),
                torch.tensor([config.audio_end_token_id]),
                words[text // 3 :],
            ]
        )
        rows.append(row.clamp_max(vocab - 1))
    input_ids = torch.stack(rows)  # (B, T)
    patches = int(grid.prod(-1).sum())
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values_videos": torch.randn(patches, vision.in_channels * temporal * patch * patch, generator=gen),
        "video_grid_thw": grid,
        "video_second_per_grid": torch.full((batch,), temporal / 2.0),
        "input_features": torch.randn(batch, config.audio_config.num_mel_bins, mel, generator=gen),
        "feature_attention_mask": torch.ones(batch, mel, dtype=torch.long),
        "use_audio_in_video": False,
    }
    return Batch(
        inputs,
        [f"s{i}" for i in range(batch)],
        ["meld_emotion"] * batch,
        ["EMO"] * batch,
        torch.zeros(batch, dtype=torch.long),
        None,
    )


def tower_params(model: torch.nn.Module) -> dict[str, int]:
    counts = {"llm": 0, "visual": 0, "audio": 0}
    for name, p in model.named_parameters():
        key = "visual" if ".visual." in name else "audio" if ".audio_tower." in name else "llm"
        if "lora_" not in name:
            counts[key] += p.numel()
    return counts


def run(dtype: str, args: argparse.Namespace, config) -> dict[str, float]:  # noqa: ANN001
    device = torch.device(args.device)
    torch.manual_seed(0)
    thinker = build_random_thinker(config, dtype=dtype)
    model = OmniSapiens(add_lora(thinker), default_label_space())
    model.heads.to(torch.float32)
    trainable = set_trainable(model, "cls")
    model.thinker.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(device).train()
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    batch = synthetic_batch(
        config,
        batch=args.micro_batch,
        frames=args.frames,
        side=args.side,
        audio_seconds=args.audio_seconds,
        text=args.text_tokens,
    ).to(device)
    if dtype == "bfloat16":
        batch.inputs["pixel_values_videos"] = batch.inputs["pixel_values_videos"].to(torch.bfloat16)
        batch.inputs["input_features"] = batch.inputs["input_features"].to(torch.bfloat16)
    tokens = batch.n_tokens
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync()
            start = time.perf_counter()
        losses = model(batch)
        losses.total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    train_s = (time.perf_counter() - start) / args.steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    model.eval()
    with torch.no_grad():
        for step in range(args.warmup + args.steps):
            if step == args.warmup:
                sync()
                start = time.perf_counter()
            model.classify(batch)
    sync()
    predict_s = (time.perf_counter() - start) / args.steps
    params = tower_params(model)
    patches = int(batch.inputs["video_grid_thw"].prod(-1).sum())
    audio_frames = int(batch.inputs["feature_attention_mask"].sum()) // 2
    flops = 6 * (params["llm"] * tokens + params["visual"] * patches + params["audio"] * audio_frames)
    del model, optimizer, thinker
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "samples_per_s": args.micro_batch / train_s,
        "tokens_per_s": tokens / train_s,
        "mfu": flops / train_s / (args.peak_tflops * 1e12),
        "peak_gb": peak,
        "predict_samples_per_s": args.micro_batch / predict_s,
        "tokens_per_sample": tokens / args.micro_batch,
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--side", type=int, default=448)
    parser.add_argument("--audio-seconds", type=float, default=30.0)
    parser.add_argument("--text-tokens", type=int, default=150)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--tiny", action="store_true", help="the tiny fixture config (smoke test, not a benchmark)")
    parser.add_argument(
        "--reduced",
        action="store_true",
        help="the 7B config with every tower 1 layer, 64 wide (CPU test of this script)",
    )
    args = parser.parse_args(argv)
    if args.tiny:
        from hba_core.fixtures.tiny_omni import build_tokenizer, thinker_config

        config = thinker_config(build_tokenizer())
        args.frames, args.side, args.audio_seconds, args.text_tokens = 4, 56, 2.0, 20
    elif args.reduced:
        from hba_core.model.configs import reduced_7b_thinker

        config = reduced_7b_thinker()
        args.frames, args.side, args.audio_seconds, args.text_tokens = 4, 56, 2.0, 20
    else:
        from hba_core.model.configs import qwen2_5_omni_7b_thinker

        config = qwen2_5_omni_7b_thinker()
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    print(
        f"device: {device_name}; micro-batch {args.micro_batch}; {args.frames} frames of {args.side}px, "
        f"{args.audio_seconds:g} s audio; LoRA r=32 + gradient checkpointing"
    )
    print(
        f"{'dtype':<9} {'tok/sample':>10} {'train samples/s':>16} {'tokens/s':>10} {'MFU':>6} {'peak GB':>8} "
        f"{'predict samples/s':>18}"
    )
    results = {}
    for dtype in args.dtypes.split(","):
        r = results[dtype] = run(dtype, args, config)
        print(
            f"{dtype:<9} {r['tokens_per_sample']:>10.0f} {r['samples_per_s']:>16.2f} {r['tokens_per_s']:>10.0f} "
            f"{r['mfu']:>6.1%} {r['peak_gb']:>8.1f} {r['predict_samples_per_s']:>18.2f}"
        )
    if {"bfloat16", "float32"} <= set(results):
        ratio = results["bfloat16"]["samples_per_s"] / results["float32"]["samples_per_s"]
        print(f"bf16 / fp32 training speed: {ratio:.1f}x")
    return results


if __name__ == "__main__":
    main()
