"""Rollout engines: sample G responses per prompt from the current policy.

The trainer only talks to the :class:`RolloutEngine` protocol: ``generate(batch, sampling)`` returns the
sampled response token ids for each row of a :class:`PromptBatch`, and ``sync_weights(model)`` makes the
engine sample from the policy's current weights. :class:`HFGenerateEngine` is Hugging Face ``generate``
on the policy itself (KV cache, batched, temperature/top-p), always available. :class:`VLLMEngine` serves
the same requests from vLLM (paged attention, continuous batching) when the optional ``vllm`` package is
installed; nothing else in hba imports it.

>>> SamplingConfig(max_new_tokens=64, temperature=0.7).top_p
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class SamplingConfig:
    """How responses are sampled during rollouts."""

    max_new_tokens: int = 4096  # C.2: max response length
    temperature: float = 1.0  # 1.0 samples from the policy itself, so pi_old is the sampling distribution
    top_p: float = 1.0  # < 1 truncates the tail; the ratio pi/pi_old then ignores that truncation, as in VERL


@dataclass
class PromptBatch:
    """Prompts ready for generation, one row per response to sample (each prompt repeated G times).

    ``samples`` are the HBA samples of the rows (with the reasoning template applied to ``problem``);
    ``inputs`` are the Thinker inputs of the same rows, left-padded (``input_ids``, ``attention_mask``
    and any media tensors), which the Hugging Face engine and the policy's forward pass use.
    """

    samples: list[dict[str, Any]]
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)


class RolloutEngine(Protocol):
    """What the trainer needs from a generator."""

    def generate(self, batch: PromptBatch, sampling: SamplingConfig) -> list[list[int]]:
        """Response token ids per row, ending with the end-of-sequence token when one was produced."""
        ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Sample from ``model``'s current weights from now on."""
        ...


class HFGenerateEngine:
    """Hugging Face ``generate`` on the policy module itself: no copy of the weights, nothing to sync.

    Batched over all rows of the :class:`PromptBatch` (KV cache on), sampling with temperature/top-p.
    The model is put in eval mode for the call (no dropout while sampling) and restored afterwards.
    """

    def __init__(
        self, model: torch.nn.Module, *, eos_token_id: int, pad_token_id: int, suppress_token_ids: Sequence[int] = ()
    ):
        self.model = model
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        # Media placeholder tokens must never be sampled: in the policy's forward pass they would claim
        # audio/video features that do not exist.
        self.suppress_token_ids = list(suppress_token_ids)

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.model = model

    @torch.no_grad()
    def generate(self, batch: PromptBatch, sampling: SamplingConfig) -> list[list[int]]:
        was_training = self.model.training
        self.model.eval()
        try:
            prompt_len = batch.inputs["input_ids"].shape[1]
            sequences = self.model.generate(
                **batch.inputs,
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=0,
                max_new_tokens=sampling.max_new_tokens,
                use_cache=True,
                eos_token_id=self.eos_token_id,
                pad_token_id=self.pad_token_id,
                suppress_tokens=self.suppress_token_ids or None,
            )  # (B, T_prompt + T_new); rows that stopped early are padded after their eos
        finally:
            self.model.train(was_training)
        if not isinstance(sequences, torch.Tensor):  # a GenerateOutput when the config asks for dict outputs
            sequences = sequences.sequences
        return [trim_at_eos(row.tolist(), self.eos_token_id) for row in sequences[:, prompt_len:]]


class VLLMEngine:
    """Rollouts served by vLLM (optional: ``pip install vllm``; only this class imports it).

    What changes against :class:`HFGenerateEngine`: vLLM keeps its own copy of the weights in paged,
    continuously batched inference, so generation (the largest share of a GRPO step, docs/bench-grpo.md) runs
    faster, at the price of that copy's memory and of ``sync_weights`` after each policy update.
    This engine takes the token ids of text-only prompts; prompts with audio/video go through
    :class:`HFGenerateEngine` (vLLM's multimodal inputs need the raw media, which the Thinker inputs no
    longer hold). Weight sync passes the policy's full state dict (full fine-tuning; not LoRA) through
    vLLM's ``load_weights``, whose module path differs across vLLM versions: this class is written
    against the v0 engine API and has not been run in this repository's CI (no GPU, no vllm).
    """

    def __init__(self, model_path: str, *, eos_token_id: int, gpu_memory_utilization: float = 0.4, **llm_kwargs: Any):
        try:
            import vllm
        except ImportError as exc:
            raise ImportError(
                "the vLLM rollout engine is optional: `pip install vllm` (GPU only), "
                "or use the default Hugging Face engine (--engine hf)"
            ) from exc
        self._vllm = vllm
        self.eos_token_id = eos_token_id
        self.llm = vllm.LLM(model=model_path, gpu_memory_utilization=gpu_memory_utilization, **llm_kwargs)

    def sync_weights(self, model: torch.nn.Module) -> None:
        state = {k: v.detach() for k, v in model.state_dict().items()}
        # vLLM's model runner loads (name, tensor) pairs with the same renaming it applies to checkpoints.
        self.llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights(state.items())

    def generate(self, batch: PromptBatch, sampling: SamplingConfig) -> list[list[int]]:
        keys = [
            k
            for k, v in batch.inputs.items()
            if isinstance(v, torch.Tensor) and k not in ("input_ids", "attention_mask")
        ]
        if keys:
            raise ValueError(
                f"the vLLM engine takes text-only prompts; these rows carry {sorted(keys)}: use the Hugging Face engine"
            )
        ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
        prompts = [{"prompt_token_ids": row[m.bool()].tolist()} for row, m in zip(ids, mask)]
        params = self._vllm.SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            stop_token_ids=[self.eos_token_id],
        )
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [list(out.outputs[0].token_ids) for out in outputs]


def trim_at_eos(tokens: list[int], eos_token_id: int) -> list[int]:
    """Tokens up to and including the first eos (the padding after it dropped).

    >>> trim_at_eos([5, 6, 2, 0, 0], eos_token_id=2)
    [5, 6, 2]
    """
    if eos_token_id in tokens:
        return tokens[: tokens.index(eos_token_id) + 1]
    return tokens


def response_tensors(responses: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded response ids (B, T_resp) and their mask (B, T_resp); T_resp >= 1.

    >>> ids, mask = response_tensors([[7, 2], [9]], pad_token_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[7, 2], [9, 0]], [[1, 1], [1, 0]])
    """
    width = max([len(r) for r in responses] + [1])
    ids = torch.full((len(responses), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(responses), width), dtype=torch.long)
    for i, r in enumerate(responses):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask
