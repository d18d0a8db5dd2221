"""Pulling the answer out of a model's text: ``<think>`` stripping and ``\\boxed{...}`` extraction.

Shared by the scorer (free text -> label), the judge (candidate answer) and the GRPO rewards, so
that evaluation and training read answers the same way.

>>> extract_boxed(r"<think>hmm</think> so \\boxed{\\text{not sarcasm}}")
'\\\\text{not sarcasm}'
>>> strip_think("<think>long reasoning</think>The answer is happy.")
'The answer is happy.'
"""

from __future__ import annotations

import re

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_UNCLOSED_THINK = re.compile(r"<think>.*\Z", re.DOTALL | re.IGNORECASE)
_BOXED = "\\boxed{"


def strip_think(text: str) -> str:
    """Remove ``<think>...</think>`` reasoning (and an unclosed trailing ``<think>...``)."""
    without = _THINK_BLOCK.sub("", text)
    if "</think>" in without.lower():  # only a closing tag: everything before it was reasoning
        without = without[without.lower().rindex("</think>") + len("</think>"):]
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
                    return text[start + len(_BOXED):i].strip()
        start = text.rfind(_BOXED, 0, start)  # unclosed: try an earlier box
    return None


def has_think(text: str) -> bool:
    """True when the text has a closed ``<think>...</think>`` block."""
    return _THINK_BLOCK.search(text) is not None
