"""Pulling the answer out of a model's text: ``<think>`` stripping, ``\\boxed{...}`` extraction, free text -> label.

Shared by the scorer (free text -> label), the judge (candidate answer) and the GRPO rewards, so
that evaluation and training read answers the same way.

>>> extract_boxed(r"<think>hmm</think> so \\boxed{\\text{not sarcasm}}")
'\\\\text{not sarcasm}'
>>> strip_think("<think>long reasoning</think>The answer is happy.")
'The answer is happy.'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from hba_core import registry

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_UNCLOSED_THINK = re.compile(r"<think>.*\Z", re.DOTALL | re.IGNORECASE)
_BOXED = "\\boxed{"


def strip_think(text: str) -> str:
    """Remove ``<think>...</think>`` reasoning (and an unclosed trailing ``<think>...``)."""
    without = _THINK_BLOCK.sub("", text)
    if "</think>" in without.lower():  # only a closing tag: everything before it was reasoning
        without = without[without.lower().rindex("</think>") + len("</think>") :]
    return _UNCLOSED_THINK.sub("", without).strip()


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, with nested braces balanced; None when there is none or it is unclosed."""
    start = text.rfind(_BOXED)
    while start != -1:
        depth = 0
        for i in range(start + len(_BOXED) - 1, len(text)):
            ch = text[i]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start + len(_BOXED) : i].strip()
        start = text.rfind(_BOXED, 0, start)  # unclosed: try an earlier box
    return None


def has_think(text: str) -> bool:
    """True when the text has a closed ``<think>...</think>`` block."""
    return _THINK_BLOCK.search(text) is not None


# ---------------------------------------------------------------- free text -> label
# Explicit answer markers, tried in this order; when one is present its content alone decides the label.
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_LINE = re.compile(r"\banswer\s*(?:is)?\s*[:=]\s*([^\n]*)", re.IGNORECASE)
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")
_SPACES = re.compile(r"\s+")


def _unlatex(text: str) -> str:
    return _LATEX_TEXT.sub(r"\1", text).replace("\\", " ")


def answer_span(text: str) -> str | None:
    """The explicitly marked answer: last ``\\boxed{}``, else last ``<answer>...</answer>``, else the last
    ``Answer: ...`` line; None when the text marks no answer (``<think>`` is stripped first).

    >>> answer_span("<think>maybe anger</think>Answer: happy.")
    'happy.'
    """
    body = strip_think(text)
    boxed = extract_boxed(body)
    if boxed is not None:
        return _unlatex(boxed)
    tags = _ANSWER_TAG.findall(body)
    if tags:
        return tags[-1].strip()
    lines = _ANSWER_LINE.findall(body)
    if lines:
        return lines[-1].strip()
    return None


@functools.cache
def _matcher(dataset: str) -> tuple[dict[str, str], re.Pattern[str], frozenset[str]]:
    """Exact lookup, a mention regex (longest surface form first) and the yes/no words of one dataset."""
    forms = registry.label_surface_forms(dataset)
    booleans = frozenset(w for words in registry.get().boolean_answers.values() for w in words)
    mentionable = sorted((f for f in forms if f not in booleans), key=lambda f: (-len(f), f))
    if not mentionable:  # free-text dataset: nothing to find
        return forms, re.compile(r"(?!x)x"), booleans
    alternation = "|".join(re.escape(f) for f in mentionable)
    return forms, re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])"), booleans


def _label_in(span: str, dataset: str) -> str | None:
    forms, mention, booleans = _matcher(dataset)
    norm = registry.normalize_text(span)
    exact = forms.get(norm)
    if exact is not None:
        return exact
    flat = _SPACES.sub(" ", span.lower())
    found = mention.search(flat)  # leftmost match; at one position the longest form wins
    if found is not None:
        return forms[found.group(0)]
    first = registry.normalize_text(flat.split(" ", 1)[0]) if flat.strip() else ""
    if first in booleans and first in forms:  # "No, the speaker is not being ironic."
        return forms[first]
    return None


def extract_label(text: str | None, dataset: str) -> str | None:
    """The dataset label a model's free-text answer names, or None when it names none (unparseable).

    Order: an explicit answer (``\\boxed{}``, ``<answer>``, ``Answer: ...``) decides alone when present;
    otherwise the whole reply (without ``<think>``). Within that span: an exact surface form
    (case, punctuation and registry synonyms), else the earliest label mentioned, the longest form
    winning at one position (so "not sarcastic" beats "sarcastic", "weakly positive" beats
    "positive"), else a leading yes/no for binary detection datasets.

    >>> extract_label("I think the speaker is not sarcastic at all.", "mmsd")
    'not sarcasm'
    >>> extract_label(r"<think>angry? no</think> \\boxed{\\text{Joy}}", "meld_emotion")
    'happy'
    >>> extract_label("The answer is C", "cremad") is None
    True
    """
    if not text:
        return None
    span = answer_span(text)
    if span is not None:
        return _label_in(span, dataset)
    return _label_in(strip_think(text), dataset)


def extract_labels(texts: Iterable[str | None], dataset: str) -> list[str | None]:
    """:func:`extract_label` over many answers of one dataset; repeated texts are parsed once.

    >>> extract_labels(["happy", "Happy!", "joy", "???"], "tess")
    ['happy', 'happy', 'happy', None]
    """
    seen: dict[str | None, str | None] = {}
    out: list[str | None] = []
    for text in texts:
        if text not in seen:
            seen[text] = extract_label(text, dataset)
        out.append(seen[text])
    return out
