"""What the judge is shown: the dataset question, the candidate answer and the reference answer.

The judge sees the dataset-provided question only, never the whole model prompt. ``hba-convert``
keeps it in ``metadata.question``; for rows without it the question is recovered from ``problem``
by removing modality tags, the transcript and the answer instructions.

>>> dataset_question({"problem": "<video>\\n<audio>\\nWhy does he wave? Answer in one sentence."})
'Why does he wave?'
>>> candidate_answer("<think>maybe</think>So the answer is \\\\boxed{He greets a friend.}")
'He greets a friend.'
"""

from __future__ import annotations

import re
from typing import Any

from hba_core.answers import extract_boxed, strip_think
from hba_core.samples import MODALITY_TAG

# Sentences that frame the media or tell the model how to answer: never part of the dataset question.
_FRAMING = re.compile(r"^(the above is|above is|this is a (video|recording|clip))\b", re.IGNORECASE)
_INSTRUCTION = re.compile(
    r"^(answer|respond|reply|choose|select|pick|provide|give|please (answer|respond|reply|choose|provide|give))\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.?!])\s+")
_TEXT_WRAPPER = re.compile(r"^\\text\{(.*)\}$", re.DOTALL)


def _question_from_problem(problem: str) -> str:
    """The question part of a prompt: last text line, without framing sentences and answer instructions."""
    text = MODALITY_TAG.sub("", problem)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    # The release puts tags first, then the transcript (when there is one), then framing + question + instructions.
    sentences = [s for s in _SENTENCE.split(lines[-1]) if s.strip()]
    kept = [s for s in sentences if not _FRAMING.match(s) and not _INSTRUCTION.match(s)]
    return " ".join(kept).strip()


def dataset_question(sample: dict[str, Any]) -> str:
    """``metadata.question`` when present, else the question recovered from ``problem`` ('' when none)."""
    metadata = sample.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("question"), str) and metadata["question"].strip():
        return metadata["question"].strip()
    return _question_from_problem(sample.get("problem") or "")


def candidate_answer(prediction: str | None, *, keep_think: bool = False) -> str:
    """The answer the judge grades: ``<think>`` removed (unless ``keep_think``), the ``\\boxed{}`` content if any."""
    if prediction is None:
        return ""
    text = prediction if keep_think else strip_think(prediction)
    boxed = extract_boxed(text)
    if boxed is None:
        return text.strip()
    wrapped = _TEXT_WRAPPER.match(boxed)  # \\boxed{\\text{...}}: the words inside
    return (wrapped.group(1) if wrapped else boxed).strip()
