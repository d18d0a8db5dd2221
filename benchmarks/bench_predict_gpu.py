"""Benchmark hba-predict --mode generate on a GPU: a Qwen2.5-VL-7B-sized model with random weights, in bf16.

Speed does not depend on the weights, so nothing is downloaded: the model is built from the published
Qwen2.5-VL-7B-Instruct configuration (:func:`hba_core.model.configs.qwen2_5_vl_7b_instruct`, 8.29 B
parameters), initialised directly on the GPU in bf16, and saved with its processor (a real
``Qwen2_5_VLProcessor`` over a locally trained BPE; the config takes its token ids) to a temporary
directory. hba-predict's own path then loads it (``load_predictor`` -> ``AutoModelForImageTextToText``)
and predicts Atlas-shaped samples (``fixture_sample`` prompts of every dataset; video clips of
``--seconds`` at ``--side`` px with audio, so Qwen2.5-VL gets the video natively and the audio as the
transcript), batched as hba-predict batches them. The same directory and prompts then go through vLLM
when ``import vllm`` works (one line says so when it does not).

Random weights pick the end-of-turn token about once in 152,064 steps, so every sample generates
``--max-new-tokens`` tokens (vLLM's mean generated length is printed as a check): this measures prefill
plus a fixed decode. The local tokenizer knows only its first ~400 ids, so the random model's output
decodes to (near) empty text; vLLM is asked for token ids alone (``detokenize=False``).

    python benchmarks/bench_predict_gpu.py                           # 7B-sized, bf16, 64 samples
    python benchmarks/bench_predict_gpu.py --samples 256 --batch-size 16 --max-new-tokens 32
    python benchmarks/bench_predict_gpu.py --reduced --device cpu --samples 4 --batch-size 2 --max-new-tokens 2
                                                                   # toy sizes: CPU test of this script
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from hba_core import registry
from hba_core.fixtures.atlas import fixture_sample
from hba_core.fixtures.media import write_face_clip, write_voice_wav
from hba_core.fixtures.tiny_models import qwen2_5_vl_processor, qwen2_5_vl_token_ids
from hba_core.jsonl import iter_jsonl, write_jsonl
from hba_core.model.collate import MediaSettings


def write_samples(root: Path, *, count: int, clips: int, seconds: float, side: int) -> Path:
    """``count`` Atlas-shaped samples over every dataset in turn, their media under ``root``; -> samples.jsonl."""
    for k in range(clips):
        write_face_clip(root / f"video/clip{k}.mp4", seconds=seconds, size=side, seed=k)
        write_voice_wav(root / f"audio/clip{k}.wav", seconds=seconds, seed=k)
    names = list(registry.get().datasets)
    rows = []
    for i in range(count):
        ds = registry.dataset(names[i % len(names)])
        k = i % clips
        video = f"video/clip{k}.mp4" if "video" in ds.modalities else None
        audio = f"audio/clip{k}.wav" if "audio" in ds.modalities else None
        row = fixture_sample(ds.name, i, "test", video=video, audio=audio)
        rows.append({**row, "id": f"bench-{i:05d}"})
    path = root / "samples.jsonl"
    write_jsonl(path, rows)
    return path


def build_model_dir(path: Path, config: Any, *, dtype: str, device: str) -> int:
    """Random weights initialised on ``device`` in ``dtype``, saved with the processor; -> parameter count."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    processor = qwen2_5_vl_processor()
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=getattr(torch, dtype))
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return params


def hf_generate(model_dir: Path, samples: Path, media: MediaSettings, args: argparse.Namespace) -> dict[str, Any]:
    """hba-predict's loop (``predict_file``) on the saved model: a warm-up run, then the timed one."""
    from hba_core.predict import load_predictor, predict_file

    predictor = load_predictor(str(model_dir), dtype=args.dtype, device=args.device)
    options = dict(
        media=media,
        mode="generate",
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        workers=args.workers,
    )
    rows = [row for _, row in iter_jsonl(samples)]
    warm = samples.with_name("warmup.jsonl")
    write_jsonl(warm, rows[: args.batch_size])
    predict_file(predictor, warm, samples.with_name("warmup-pred.jsonl"), **options)
    sync()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start, cpu = time.perf_counter(), time.process_time()
    summary = predict_file(predictor, samples, samples.with_name("pred.jsonl"), **options)
    sync()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else float("nan")
    del predictor
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {
        "samples": summary["written"],
        "seconds": seconds,
        "cpu_seconds": cpu,
        "samples_per_s": summary["written"] / seconds,
        "peak_gb": peak,
        "substitutions": summary["substitutions"],
    }


def vllm_generate(model_dir: Path, samples: Path, media: MediaSettings, args: argparse.Namespace) -> dict[str, Any]:
    """The same prompts and decoded frames through vLLM's offline engine (greedy, same token budget).

    ``samples_per_s`` counts media decoding and prompt building (in this process, as hba-predict's
    count does with its DataLoader workers) plus generation; ``generate_samples_per_s`` generation alone.
    """
    from vllm import LLM, SamplingParams

    from hba_core.model.generic import GenericCollator, GenericModel, Substitutions, load_generic_processor
    from hba_core.model.source import locate

    source = locate(str(model_dir), flag="--model")
    processor, backbone = load_generic_processor(str(model_dir), source.config)
    collate = GenericCollator(GenericModel("vllm", backbone, None, processor), media)
    subs = Substitutions()
    prompts = []
    start = time.perf_counter()
    for _, row in iter_jsonl(samples):
        prepared = collate.prepare(row, subs)
        prompt: dict[str, Any] = {"prompt": prepared.text}
        if prepared.videos:
            prompt["multi_modal_data"] = {"video": prepared.videos[0]}  # (T, H, W, 3) uint8
        prompts.append(prompt)
    prepare_s = time.perf_counter() - start
    llm = LLM(
        model=str(model_dir),
        dtype=args.dtype,
        max_model_len=args.vllm_max_model_len,
        limit_mm_per_prompt={"image": 0, "video": 1},
        gpu_memory_utilization=args.vllm_gpu_memory,
        seed=0,
    )
    params = SamplingParams(temperature=0.0, max_tokens=args.max_new_tokens, detokenize=False)
    llm.generate(prompts[: args.batch_size], params, use_tqdm=False)  # warm-up: CUDA graphs, caches
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - start
    lengths = [len(out.outputs[0].token_ids) for out in outputs]
    return {
        "samples": len(outputs),
        "seconds": prepare_s + seconds,
        "samples_per_s": len(outputs) / (prepare_s + seconds),
        "generate_samples_per_s": len(outputs) / seconds,
        "mean_new_tokens": statistics.fmean(lengths) if lengths else 0.0,
    }


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--samples", type=int, default=64, help="samples predicted (every dataset in turn)")
    parser.add_argument("--batch-size", type=int, default=8, help="hba-predict --batch-size")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="hba-predict --max-new-tokens")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    parser.add_argument("--side", type=int, default=336, help="clip frame side in px (336 = 144 tokens a frame pair)")
    parser.add_argument("--clips", type=int, default=4, help="distinct clips the samples share")
    parser.add_argument("--max-frames", type=int, default=32, help="hba-predict --max-frames")
    parser.add_argument("--workers", type=int, default=2, help="hba-predict --workers (media decoding processes)")
    parser.add_argument("--vllm", choices=("auto", "off"), default="auto", help="auto: when `import vllm` works")
    parser.add_argument("--vllm-max-model-len", type=int, default=8192)
    parser.add_argument("--vllm-gpu-memory", type=float, default=0.85)
    parser.add_argument("--workdir", default=None, help="keep the model and samples here (default: a temp dir)")
    parser.add_argument(
        "--reduced", action="store_true", help="Qwen2.5-VL-7B's structure at toy sizes (CPU test of this script)"
    )
    args = parser.parse_args(argv)
    from hba_core.model.configs import qwen2_5_vl_7b_instruct, reduced_qwen2_5_vl_7b

    processor = qwen2_5_vl_processor()  # the local tokenizer's ids; the vocabulary stays the real 152,064
    tok = processor.tokenizer
    tokens = {
        **qwen2_5_vl_token_ids(processor),
        "text_config": {"bos_token_id": None, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id},
    }
    if args.reduced:
        config = reduced_qwen2_5_vl_7b(**tokens)
        args.seconds, args.side = min(args.seconds, 1.0), min(args.side, 56)
    else:
        config = qwen2_5_vl_7b_instruct(**tokens)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench_predict_gpu: no CUDA device; run it on a GPU, or with --reduced --device cpu")
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    with tempfile.TemporaryDirectory(prefix="hba-bench-predict-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(
            f"building {'reduced ' if args.reduced else ''}Qwen2.5-VL-7B ({args.dtype}) on {device_name}",
            file=sys.stderr,
        )
        params = build_model_dir(work / "model", config, dtype=args.dtype, device=args.device)
        samples = write_samples(
            work / "data", count=args.samples, clips=args.clips, seconds=args.seconds, side=args.side
        )
        media = MediaSettings(data_root=str(work / "data"), max_frames=args.max_frames)
        print(
            f"device: {device_name}; {params / 1e9:.2f} B parameters, {args.dtype}; {args.samples} samples, "
            f"batch {args.batch_size}, {args.max_new_tokens} new tokens; clips {args.seconds:g} s at {args.side}px"
        )
        results: dict[str, Any] = {"params": params, "hf": hf_generate(work / "model", samples, media, args)}
        hf = results["hf"]
        print(
            f"hba-predict generate (transformers): {hf['samples_per_s']:.2f} samples/s "
            f"({hf['samples']} in {hf['seconds']:.1f} s, CPU {hf['cpu_seconds']:.1f} s"
            + (f", peak {hf['peak_gb']:.1f} GB)" if args.device.startswith("cuda") else ")")
        )
        results["vllm"] = None
        if args.vllm == "off":
            print("vLLM: skipped (--vllm off)")
        elif not args.device.startswith("cuda"):
            print("vLLM: skipped (it needs a GPU; --device is not cuda)")
        else:
            try:
                import vllm  # noqa: F401 - optional engine: `pip install -e ".[vllm]"`
            except ImportError as exc:
                print(f"vLLM: skipped (import vllm failed: {exc}); pip install -e '.[vllm]' to compare")
            else:
                v = results["vllm"] = vllm_generate(work / "model", samples, media, args)
                print(
                    f"vLLM offline generate:               {v['samples_per_s']:.2f} samples/s "
                    f"({v['samples']} in {v['seconds']:.1f} s with media decoding, {v['mean_new_tokens']:.1f} new "
                    f"tokens/sample; generation alone {v['generate_samples_per_s']:.2f} samples/s); "
                    f"{v['samples_per_s'] / hf['samples_per_s']:.1f}x hba-predict"
                )
    return results


if __name__ == "__main__":
    main()
