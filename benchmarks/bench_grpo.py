"""Benchmark one GRPO step: rollout tokens/s vs training tokens/s, and where the step's time goes.

CPU (always): the tiny random Qwen2.5-Omni fixture, through the real trainer (``hba_core.rl.step.train_step``):
text-only prompts and audio+video prompts, C.2's shape at toy scale (8 prompts x 5 responses per step,
2 PPO mini-batches, so the pi_old pass runs as it does at 256/128). Shares of the step:

  media    - decode media + chat template, once per prompt (hba_core.model.collate.prepare_sample)
  rollout  - processor + Hugging Face generate with KV cache (HFGenerateEngine), batched
  reward   - Eq. 5 (boxed extraction + MiniLM embeddings)
  logp     - pi_old log-probs (no grad)
  train    - forward + backward + AdamW over micro-batches

GPU (when CUDA is present): the full-size Thinker with random weights (transformers' default
Qwen2_5OmniThinkerConfig = the 7B sizes), bf16, text prompts: generate tokens/s vs forward+backward tokens/s.

    python benchmarks/bench_grpo.py                   # fixtures built under ./fixtures if absent
    python benchmarks/bench_grpo.py --steps 3 --max-new-tokens 64 --fixtures /tmp/hba-fixtures
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import torch

from hba_core.fixtures import build_all
from hba_core.jsonl import write_jsonl


def cpu_bench(fx: Any, signature: str, steps: int, max_new_tokens: int, out: Path) -> dict[str, float]:
    from hba_core.rl.config import GrpoConfig
    from hba_core.rl.policy import Policy
    from hba_core.rl.step import train_step
    from hba_core.rl.trainer import default_reward, step_prompts

    rows = [orjson.loads(line) for line in fx.atlas.read_bytes().splitlines()]
    picked = [r for r in rows if r["modality_signature"] == signature][:8]
    data = fx.data / f"bench-grpo-{signature}.jsonl"
    write_jsonl(data, picked)
    config = GrpoConfig(
        init=str(fx.omni),
        train=str(data),
        out=str(out / signature),
        prompts_per_step=8,
        mini_batch=4,
        micro_batch=4,
        rollout_batch=8,
        group_size=5,
        max_new_tokens=max_new_tokens,
        lr=1e-5,
        temperature=1.0,
    )
    policy = Policy(config)
    reward = default_reward({})
    timed_reward_seconds = [0.0]

    def timed_reward(texts: list[str], samples: list[dict[str, Any]]) -> dict[str, list[float]]:
        t0 = time.perf_counter()
        result = reward(texts, samples)
        timed_reward_seconds[0] += time.perf_counter() - t0
        return result

    timed_reward(["warm-up \\boxed{x}"], [{"answer": "x"}])  # load the embedder outside the timing
    timed_reward_seconds[0] = 0.0
    totals = dict.fromkeys(("media_seconds", "rollout_seconds", "logp_seconds", "train_seconds"), 0.0)
    gen_tokens = train_tokens = 0.0
    for step in range(steps):
        line = train_step(policy, step_prompts(picked, step, 8, 0), step, timed_reward)
        for key in totals:
            totals[key] += line[key]
        gen_tokens += line["response_length"] * line["responses"]
        train_tokens += line["train_tokens_per_s"] * line["train_seconds"]
    totals["reward_seconds"] = timed_reward_seconds[0]
    step_total = sum(totals.values())
    return {
        "rollout_tok_s": gen_tokens / totals["rollout_seconds"],
        "train_tok_s": train_tokens / totals["train_seconds"],
        **{k.replace("_seconds", "_share"): v / step_total for k, v in totals.items()},
        "step_s": step_total / steps,
    }


def reward_bench(n: int = 1280) -> float:
    """Seconds to reward one C.2 step's responses (256 prompts x 5), every one with a boxed answer."""
    from hba_core import registry
    from hba_core.rewards import grpo_rewards, sentence_embedder

    labels = [label for name in registry.dataset_names() for label in registry.dataset(name).labels] or ["x"]
    completions = [f"<think>reasoning {i}</think> \\boxed{{{labels[i % len(labels)]}}}" for i in range(n)]
    answers = [labels[(i * 7) % len(labels)] for i in range(n)]
    sentence_embedder()  # loaded once per process, outside the timing
    t0 = time.perf_counter()
    grpo_rewards(completions, answers)
    return time.perf_counter() - t0


def gpu_bench(batch: int, prompt_tokens: int, new_tokens: int) -> dict[str, float]:
    from hba_core.model.backbone import build_random_thinker
    from hba_core.rl.loss import clipped_surrogate_loss
    from hba_core.rl.rollout import HFGenerateEngine, PromptBatch, SamplingConfig, response_tensors

    model = build_random_thinker(dtype="bfloat16").cuda()
    model.gradient_checkpointing_enable()
    vocab = model.config.text_config.vocab_size
    ids = torch.randint(1000, 20000, (batch, prompt_tokens), device="cuda")
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    engine = HFGenerateEngine(model, eos_token_id=vocab + 1, pad_token_id=0)  # no eos: full-length responses
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    responses = engine.generate(PromptBatch([], inputs), SamplingConfig(max_new_tokens=new_tokens))
    torch.cuda.synchronize()
    gen_s = time.perf_counter() - t0
    resp, mask = response_tensors(responses, 0)
    resp, mask = resp.cuda(), mask.cuda()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-7)
    model.train()
    micro = 2
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, batch, micro):
        full = torch.cat([ids[i : i + micro], resp[i : i + micro]], 1)
        logits = model(input_ids=full, attention_mask=torch.ones_like(full), use_cache=False).logits
        logp = torch.log_softmax(logits[:, prompt_tokens - 1 : -1].float(), -1)  # (B, R, V)
        logp = logp.gather(-1, resp[i : i + micro, :, None])[..., 0]  # (B, R)
        out = clipped_surrogate_loss(logp, logp.detach(), torch.ones(logp.shape[0], device="cuda"), mask[i : i + micro])
        out.loss.backward()
    opt.step()
    torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    n_gen = int(mask.sum())
    return {
        "rollout_tok_s": n_gen / gen_s,
        "train_tok_s": batch * (prompt_tokens + resp.shape[1]) / train_s,
        "rollout_share": gen_s / (gen_s + train_s),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", default="fixtures")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    fx = build_all(args.fixtures)
    print(
        f"CPU, tiny random Qwen2.5-Omni, 8 prompts x 5 responses, {args.max_new_tokens} new tokens, {args.steps} steps"
    )
    header = ("prompts", "rollout tok/s", "train tok/s", "media", "rollout", "reward", "logp", "train", "s/step")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for signature in ("text", "text_video_audio"):
            r = cpu_bench(fx, signature, args.steps, args.max_new_tokens, Path(tmp))
            print(
                f"| {signature} | {r['rollout_tok_s']:.0f} | {r['train_tok_s']:.0f} | {r['media_share']:.0%} | "
                f"{r['rollout_share']:.0%} | {r['reward_share']:.0%} | {r['logp_share']:.0%} | "
                f"{r['train_share']:.0%} | {r['step_s']:.2f} |"
            )
    print(f"\nreward (Eq. 5, MiniLM on CPU) of 1280 boxed responses (one C.2 step): {reward_bench():.2f} s")
    if torch.cuda.is_available():
        r = gpu_bench(batch=16, prompt_tokens=512, new_tokens=256)
        print(f"\nGPU {torch.cuda.get_device_name()}: full-size random Thinker, bf16, 16 x (512 prompt + 256 new)")
        print(
            f"rollout {r['rollout_tok_s']:.0f} tok/s | train {r['train_tok_s']:.0f} tok/s | "
            f"rollout share {r['rollout_share']:.0%} | peak {r['peak_gib']:.1f} GiB"
        )
    else:
        print("\nno CUDA device: GPU figures not measured")


if __name__ == "__main__":
    main()
