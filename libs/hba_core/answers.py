"""Pulling the answer out of a model's text: ``<think>`` stripping, ``\\boxed{...}`` extraction, free text -> label.

One strict reader, :func:`read_answer`, is shared by the scorer and the GRPO rewards (and the judge
takes its candidate from :func:`answer_span`), so that evaluation and training read answers the same
way. Only a clear single answer is a label: a text that names several labels, negates the one it
names, hedges, or echoes the option list is unparseable. The reference implementation's looser
parsers (first box, else first ``[...]``, else the whole text) are :func:`reference_span`, for
``hba-score --protocol reference`` and ``hba-grpo --reward reference|harpo``.

>>> extract_boxed(r"<think>hmm</think> so \\boxed{\\text{not sarcasm}}")
'\\\\text{not sarcasm}'
>>> strip_think("<think>long reasoning</think>The answer is happy.")
'The answer is happy.'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

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


# ---------------------------------------------------------------- the strict reader
# Words that, just before a label in the same clause, turn it into its opposite or into a non-answer.
_NEGATIONS = frozenset(
    "not no never without isn't isnt aren't arent wasn't wasnt doesn't doesnt don't dont didn't didnt "
    "hardly nor neither lacks lack absence".split()
)
_NEGATION_WINDOW = 6  # words before a label, in its clause, that can negate it ("I do not think it is sad")
_HEDGE = re.compile(
    r"\b(?:can ?not|can't|cant|unable to|impossible to|hard to|difficult to)\s+(?:tell|say|determine|decide|judge)\b"
    r"|\b(?:not sure|unsure|unclear|uncertain|ambiguous|undetermined|whether|either|maybe|perhaps|possibly|might)\b"
    r"|\bor\b",
    re.IGNORECASE,
)
_CLAUSE = re.compile(r"[.,;:!?\n]")
_WORD = re.compile(r"[\w'-]+")


@dataclass(frozen=True)
class Answer:
    """What a reply answers for one dataset: ``label`` (a label of the task's label domain) or why not.

    ``in_dataset`` is False for a label of the domain that the dataset itself does not have (plain
    "positive" for CH-SIMS v2): the scorer counts and shows those apart. ``reason`` says why a reply
    is unparseable: empty, no label, several labels, negated, hedged, contradicts its yes/no.
    """

    label: str | None
    in_dataset: bool = False
    reason: str | None = None


@functools.cache
def _matcher(dataset: str) -> tuple[dict[str, str], re.Pattern[str], dict[str, str], frozenset[str]]:
    """Surface form -> domain label, a mention regex (longest form first), yes/no words -> label, own labels."""
    ds = registry.dataset(dataset)
    own = frozenset(ds.labels)
    forms: dict[str, str] = dict(registry.label_surface_forms(dataset))
    domain = ds.task.domain
    if domain is not None:  # the rest of the domain, so an answer outside the dataset is seen as such
        for label in domain.labels:
            forms.setdefault(registry.normalize_text(label), label)
        for surface, canonical in registry.get().synonyms.get(domain.name, {}).items():
            forms.setdefault(surface, canonical)
    booleans = {w for words in registry.get().boolean_answers.values() for w in words}
    yes_no = {w: forms[w] for w in booleans if w in forms}
    mentionable = sorted((f for f in forms if f not in booleans), key=lambda f: (-len(f), f))
    if not mentionable:  # free-text dataset: nothing to find
        return forms, re.compile(r"(?!x)x"), yes_no, own
    alternation = "|".join(re.escape(f) for f in mentionable)
    return forms, re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])"), yes_no, own


def _negated(flat: str, start: int) -> bool:
    clause = _CLAUSE.split(flat[:start])[-1]
    return any(w in _NEGATIONS for w in _WORD.findall(clause)[-_NEGATION_WINDOW:])


def _read_span(span: str, dataset: str) -> Answer:
    forms, mention, yes_no, own = _matcher(dataset)
    exact = forms.get(registry.normalize_text(span))
    if exact is not None:
        return Answer(exact, exact in own)
    flat = _SPACES.sub(" ", span.lower()).strip()
    found = list(mention.finditer(flat))  # leftmost-longest, non-overlapping
    labels = {forms[m.group(0)] for m in found}
    words = _WORD.findall(flat)
    leading = yes_no.get(words[0]) if words else None
    if len(labels) > 1:
        return Answer(None, reason="several labels")
    if _HEDGE.search(flat):
        return Answer(None, reason="hedged")
    if not labels:
        if leading is not None:  # "No, nothing points that way."
            return Answer(leading, leading in own)
        return Answer(None, reason="no label")
    if any(_negated(flat, m.start()) for m in found):
        return Answer(None, reason="negated")
    (label,) = labels
    if leading is not None and leading != label:
        return Answer(None, reason="contradicts its yes/no")
    return Answer(label, label in own)


def read_answer(text: str | None, dataset: str) -> Answer:
    """Read one reply for one dataset: the strict reader shared by hba-score and the GRPO rewards.

    ``<think>`` is stripped; an explicit answer (last ``\\boxed{}`` with LaTeX removed, else the last
    ``<answer>``, else the last ``Answer: ...`` line) decides alone when present, else the whole
    reply. Within that span: an exact surface form (case, punctuation, registry synonyms) is the
    label; otherwise the span must name exactly one label, not negated ("no sign of depression"),
    not hedged ("cannot tell", "maybe", "either", "or"), or be a bare leading yes/no for a binary
    detection dataset. Everything else is unparseable, with the reason.

    >>> read_answer(r"<think>hmm</think> \\boxed{\\text{not sarcasm}}", "mmsd")
    Answer(label='not sarcasm', in_dataset=True, reason=None)
    >>> read_answer("The speaker is not happy at all, rather sad.", "meld_emotion").reason
    'several labels'
    >>> read_answer("positive", "chsimsv2")
    Answer(label='positive', in_dataset=False, reason=None)
    """
    if not text:
        return Answer(None, reason="empty")
    span = answer_span(text)
    if span is None:
        span = strip_think(text)
    if not span.strip():
        return Answer(None, reason="empty")
    return _read_span(span, dataset)


def extract_label(text: str | None, dataset: str) -> str | None:
    """The dataset's own label a reply names (:func:`read_answer`), or None (unparseable or outside the set).

    >>> extract_label("I think the speaker is not sarcastic at all.", "mmsd")
    'not sarcasm'
    >>> extract_label(r"<think>angry? no</think> \\boxed{\\text{Joy}}", "meld_emotion")
    'happy'
    >>> extract_label("There is no sign of depression.", "daicwoz") is None
    True
    """
    answer = read_answer(text, dataset)
    return answer.label if answer.in_dataset else None


def read_answers(texts: Iterable[str | None], dataset: str) -> list[Answer]:
    """:func:`read_answer` over many replies of one dataset; repeated texts are read once."""
    seen: dict[str | None, Answer] = {}
    out: list[Answer] = []
    for text in texts:
        if text not in seen:
            seen[text] = read_answer(text, dataset)
        out.append(seen[text])
    return out


def extract_labels(texts: Iterable[str | None], dataset: str) -> list[str | None]:
    """:func:`extract_label` over many replies of one dataset.

    >>> extract_labels(["happy", "Happy!", "joy", "???"], "tess")
    ['happy', 'happy', 'happy', None]
    """
    return [a.label if a.in_dataset else None for a in read_answers(texts, dataset)]


def is_correct(text: str | None, gold: str, dataset: str | None = None) -> bool:
    """Whether a reply answers ``gold``: the scorer's correctness, used as the GRPO accuracy reward.

    For a classification dataset, :func:`read_answer` must give the gold label; for free text (or
    no dataset) the answer span, LaTeX removed, must equal the gold answer up to case, spaces and
    surrounding punctuation.

    >>> is_correct(r"<think>x</think> \\boxed{\\text{Not Sarcastic}}", "not sarcasm", "mmsd")
    True
    >>> is_correct(r"<think>... \\boxed{anger}</think> I cannot tell.", "anger", "cremad")
    False
    """
    if dataset is not None and not registry.dataset(dataset).is_free_text:
        label = registry.canonical_label(gold, dataset)
        return label is not None and read_answer(text, dataset).label == label
    if not text:
        return False
    span = answer_span(text)
    span = strip_think(text) if span is None else span
    return bool(span.strip()) and registry.normalize_text(span) == registry.normalize_text(_unlatex(gold))


# ---------------------------------------------------------------- the reference implementation's parsers
_REF_BOX = re.compile(r"\\boxed{([^}]*)}")
_REF_BRACKETS = re.compile(r"\[(.*?)\]")
_REF_ANSWER = re.compile(r"<answer>(.*?)</answer>")
_REF_TAG_SPACES = re.compile(r"\s*(<|>|/)\s*")


def reference_span(text: str | None, *, answer_tag: bool = False, strip: bool = True) -> str:
    """The reference code's answer: the first ``\\boxed{...}`` (no nesting), else the first ``[...]``,
    else (rewards only, ``answer_tag``) the first ``<answer>...</answer>``, else the whole text; stripped
    unless ``strip`` is False (the reference's Eq. 5 reward does not strip). ``<think>`` is kept, as the
    reference does: a box inside the reasoning counts.

    >>> reference_span(r"<think>\\boxed{sad}</think> \\boxed{happy}")
    'sad'
    >>> reference_span("  Happy ")
    'Happy'
    """
    text = text or ""
    patterns = [_REF_BOX, _REF_BRACKETS, *([_REF_ANSWER] if answer_tag else [])]
    for pattern in patterns:
        found = pattern.search(text)
        if found:
            return found.group(1).strip() if strip else found.group(1)
    return text.strip() if strip else text


def reference_tag_spacing(text: str | None) -> str:
    """The reference rewards' first step: spaces around ``<``, ``>`` and ``/`` removed (Qwen2.5-VL quirks)."""
    return _REF_TAG_SPACES.sub(r"\1", text or "")
