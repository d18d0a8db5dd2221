"""The prompt builder: modality tags, transcript, question - the paper's prompt-target format (Table 3, App. A.4).

A prompt is built from three parts, one per line block: the modality tags (``<video>``, ``<audio>``),
one per line and always first; the transcript, when the sample has one; then the instruction (the
question with its answer options). hba-convert builds every sample with :func:`build_problem` and keeps
the parts in ``metadata`` (``instruction``, ``instruction_template``, ``transcript``, ``transcript_slot``),
so that hba-transcribe can later add a machine transcript with :func:`with_transcript` and re-render
the prompt. Instruction templates mark with ``[[...]]`` the words that only hold with a transcript
(``a video recording[[, along with the transcript]]``): see :func:`render_instruction`.

>>> print(build_problem(["video", "audio"], "Oh. That's so Monica can keep track.", "What is the sentiment?"))
<video>
<audio>
Oh. That's so Monica can keep track.
What is the sentiment?
"""

from __future__ import annotations

import copy
import re
from typing import Any

from hba_core.samples import modality_signature

_TAG_LINE = re.compile(r"^<(video|audio|image)>$")
_TRANSCRIPT_PART = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)


def has_transcript_parts(template: str) -> bool:
    """Whether an instruction template has ``[[...]]`` parts that depend on a transcript."""
    return bool(_TRANSCRIPT_PART.search(template))


def render_instruction(template: str, *, has_transcript: bool) -> str:
    """An instruction from a template whose ``[[...]]`` parts are shown only when the prompt has a transcript.

    >>> t = "The above is a video recording[[, along with the transcript]]. Why?"
    >>> render_instruction(t, has_transcript=True), render_instruction(t, has_transcript=False)
    ('The above is a video recording, along with the transcript. Why?', 'The above is a video recording. Why?')
    """
    return _TRANSCRIPT_PART.sub(lambda m: m.group(1) if has_transcript else "", template)


def tag(name: str) -> str:
    """``video`` or ``<video>`` -> ``<video>``."""
    name = name.strip()
    return name if name.startswith("<") else f"<{name}>"


def build_problem(tags: list[str], transcript: str | None, instruction: str) -> str:
    """The prompt: tags one per line, then the transcript (when present and not blank), then the instruction.

    >>> build_problem(["<audio>"], None, "What emotion? Answer with one word from the following: sad, happy")
    '<audio>\\nWhat emotion? Answer with one word from the following: sad, happy'
    """
    lines = [tag(t) for t in tags]
    if transcript is not None and transcript.strip():
        lines.append(transcript.strip())
    lines.append(instruction.strip())
    return "\n".join(lines)


def options_text(labels: list[str] | tuple[str, ...]) -> str:
    """Answer options as the release writes them: ``anger, disgust, fear``."""
    return ", ".join(labels)


def split_problem(problem: str) -> tuple[list[str], str | None, str]:
    """Inverse of :func:`build_problem` for prompts whose instruction is the last line.

    Used for samples that carry no ``metadata.instruction`` (e.g. imported from the official release).

    >>> split_problem("<video>\\n<audio>\\nHi there.\\nWhat is the sentiment?")
    (['<video>', '<audio>'], 'Hi there.', 'What is the sentiment?')
    """
    lines = problem.split("\n")
    tags: list[str] = []
    while lines and _TAG_LINE.match(lines[0].strip()):
        tags.append(lines.pop(0).strip())
    if not lines:
        return tags, None, ""
    instruction = lines[-1]
    middle = "\n".join(lines[:-1]).strip()
    return tags, (middle or None), instruction


def with_transcript(sample: dict[str, Any], transcript: str, *, model: str, language: str | None) -> dict[str, Any]:
    """A new sample whose ``metadata.transcript`` is ``transcript``, with its provenance, and the prompt re-rendered.

    The prompt is re-rendered (tags, the new transcript, then the instruction: from
    ``metadata.instruction_template`` with its transcript parts shown when there is one) only where the
    dataset's template has a transcript (``metadata.transcript_slot``, true unless a converter said
    otherwise), ``modality_signature`` then gaining ``text``; the original transcript, if any, is kept in
    ``metadata.original_transcript``. The input is not changed.

    >>> s = {"problem": "<audio>\\nWhat emotion?", "dataset": "cremad", "metadata": {"instruction": "What emotion?"}}
    >>> print(with_transcript(s, "Don't forget a jacket.", model="whisper-large-v3", language="en")["problem"])
    <audio>
    Don't forget a jacket.
    What emotion?
    """
    out = copy.deepcopy(sample)
    metadata: dict[str, Any] = out.setdefault("metadata", {})
    tags, old_transcript, parsed_instruction = split_problem(out.get("problem", ""))
    template = metadata.get("instruction_template")
    instruction = (
        render_instruction(template, has_transcript=True)
        if template
        else metadata.get("instruction") or parsed_instruction
    )
    if "transcript" not in metadata:
        metadata["transcript"] = old_transcript
    if metadata.get("transcript") is not None and "original_transcript" not in metadata:
        metadata["original_transcript"] = metadata["transcript"]
    metadata["transcript"] = transcript
    metadata["transcript_source"] = {"model": model, "language": language}
    metadata["instruction"] = instruction
    if metadata.get("transcript_slot", True):
        out["problem"] = build_problem(tags, transcript, instruction)
        if isinstance(out.get("modality_signature"), str) and transcript.strip():  # the prompt now has text
            parts = set(out["modality_signature"].split("_"))
            out["modality_signature"] = modality_signature(
                text=True, video="video" in parts, audio="audio" in parts, image="image" in parts
            )
    return out
