"""Judge prompt variants: the paper's texts (prompts.toml) and user-supplied template files.

A variant is looked up by name (``paper``, ``paraphrased``, ``reference``, ``rater``) or read from a TOML
file with the same keys as one ``[variants.X]`` table. Rendering gives the two texts of one fresh request:
the dataset's instruction and the user instruction with the question, candidate and reference;
``messages`` lays them out as the variant's protocol does (hba: system + user; the reference
repository's script: two user messages, see protocols.py).

>>> v = variant("paper")
>>> system, user = v.render("siq2", question="Why?", candidate="Because.", reference="Because!")
>>> user.splitlines()[0]
'Question: Why?'
>>> variant("papr")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
hba_core.errors.UnknownNameError: unknown prompt variant 'papr'. Did you mean 'paper'? Valid: paper, paraphrased, ...
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from hba_core import registry
from hba_core.errors import InputError, UnknownNameError
from hba_core.judge.protocols import PROTOCOLS

MODES = ("judge", "rater")
_DEFAULT_PLACEHOLDERS = {"question": "{question}", "candidate": "{candidate}", "reference": "{reference}"}


@dataclass(frozen=True)
class PromptVariant:
    """One set of judge (or rater) prompts: a system instruction per dataset and a user template."""

    name: str
    mode: str  # "judge" (correct / not) or "rater" (1-5 fluency, coherence, relevance)
    system: dict[str, str]  # dataset name (or "default") -> system instruction
    user: str
    placeholders: dict[str, str]
    json_instruction: str  # appended to the user message when the server has no structured output ('' = nothing)
    protocol: str = "hba"  # "hba" or "reference" (the reference repository's request layout and readings)
    version: str = ""  # the declared revision of the texts ('' for template files: the fingerprint names them)

    def system_for(self, dataset: str) -> str:
        """The system instruction for ``dataset``; ``default`` when the variant has no dataset-specific one."""
        if dataset in self.system:
            return self.system[dataset]
        if "default" in self.system:
            return self.system["default"]
        raise UnknownNameError(f"dataset in prompt variant {self.name!r}", dataset, sorted(self.system))

    def render(
        self, dataset: str, *, question: str, candidate: str, reference: str, json_instruction: bool = False
    ) -> tuple[str, str]:
        """``(system, user)`` messages for one judgment; ``json_instruction`` asks for the JSON reply in words."""
        user = self.user
        values = {"question": question, "candidate": candidate, "reference": reference}
        # One pass over the template, so a candidate that happens to contain a placeholder is not re-expanded.
        for key, token in self.placeholders.items():
            user = user.replace(token, f"\x00{key}\x00")
        for key, value in values.items():
            user = user.replace(f"\x00{key}\x00", value)
        if json_instruction and self.json_instruction:
            user = f"{user}\n\n{self.json_instruction}"
        return self.system_for(dataset), user

    def messages(
        self, dataset: str, *, question: str, candidate: str, reference: str, json_instruction: bool = False
    ) -> list[dict[str, str]]:
        """The chat messages of one request: the instruction as a system message, or (reference) a user one."""
        system, user = self.render(
            dataset, question=question, candidate=candidate, reference=reference, json_instruction=json_instruction
        )
        first = "user" if self.protocol == "reference" else "system"
        return [{"role": first, "content": system}, {"role": "user", "content": user}]

    @property
    def prompt_version(self) -> str:
        """What each judgment records as ``prompt_version``: the declared version, else a short hash of the texts."""
        return self.version or f"sha256:{self.fingerprint[:12]}"

    @property
    def fingerprint(self) -> str:
        """A hash of every text of the variant: part of the cache key, so an edited prompt is re-judged."""
        parts = [
            self.mode,
            self.protocol,
            self.version,
            self.user,
            self.json_instruction,
            *sorted(f"{k}\x00{v}" for k, v in self.system.items()),
            *sorted(f"{k}\x00{v}" for k, v in self.placeholders.items()),
        ]
        return hashlib.sha256("\x01".join(parts).encode()).hexdigest()


@cache
def _table() -> dict[str, Any]:
    return tomllib.loads(resources.files("hba_core.judge").joinpath("prompts.toml").read_text(encoding="utf-8"))


def names() -> list[str]:
    """The built-in variant names."""
    return list(_table()["variants"])


def _build(name: str, entry: dict[str, Any], where: str) -> PromptVariant:
    mode = entry.get("mode", "judge")
    if mode not in MODES:
        raise InputError(where, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    system, user = entry.get("system"), entry.get("user")
    if not isinstance(system, dict) or not system or not all(isinstance(v, str) for v in system.values()):
        raise InputError(where, "needs a [system] table of dataset name (or 'default') = instruction text")
    if not isinstance(user, str) or not user.strip():
        raise InputError(where, "needs a non-empty 'user' template")
    explicit = entry.get("placeholders", {})
    placeholders = {**_DEFAULT_PLACEHOLDERS, **explicit}
    if mode == "rater" and "reference" not in explicit:  # the rater sees no reference answer
        del placeholders["reference"]
    for key in ("question", "candidate", "reference") if mode == "judge" else ("question", "candidate"):
        if placeholders[key] not in user:
            raise InputError(where, f"the user template has no {key} placeholder {placeholders[key]!r}")
    valid = {*registry.get().datasets, "default"}
    unknown = sorted(set(system) - valid)
    if unknown:
        raise UnknownNameError(f"dataset in {where} [system]", unknown[0], sorted(valid))
    protocol, version = entry.get("protocol", "hba"), entry.get("version", "")
    if protocol not in PROTOCOLS:
        raise InputError(where, f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "reference" and mode != "judge":
        raise InputError(where, "the reference protocol has no rater mode")
    if not isinstance(version, str):
        raise InputError(where, f"version must be a string, got {type(version).__name__}")
    instruction = entry.get("json_instruction")
    if instruction is None:
        instruction = _table()[f"json_instruction_{mode}"]
    elif not isinstance(instruction, str):
        raise InputError(where, f"json_instruction must be a string, got {type(instruction).__name__}")
    return PromptVariant(name, mode, dict(system), user, placeholders, instruction, protocol, version)


@cache
def builtin(name: str) -> PromptVariant:
    variants = _table()["variants"]
    if name not in variants:
        raise UnknownNameError("prompt variant", name, list(variants))
    return _build(name, variants[name], f"prompts.toml [variants.{name}]")


def from_file(path: str | Path) -> PromptVariant:
    """A user-supplied variant: a TOML file with ``mode``, ``user``, ``[system]`` and optional ``[placeholders]``."""
    p = Path(path)
    try:
        entry = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(str(p), "no such prompt file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(p), f"not valid TOML ({exc})") from None
    return _build(p.stem, entry, str(p))


def variant(name_or_path: str) -> PromptVariant:
    """A built-in variant by name, or a template file when the argument names an existing ``.toml`` file."""
    if name_or_path.endswith(".toml") or Path(name_or_path).is_file():
        return from_file(name_or_path)
    return builtin(name_or_path)
