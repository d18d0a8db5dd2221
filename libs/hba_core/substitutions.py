"""Modality substitutions, counted per dataset: what a model was given instead of a modality it cannot take.

Shared by local prediction with a non-Omni backbone (:mod:`hba_core.model.generic`) and served prediction
(:mod:`hba_core.served`); torch-free so a ``[judge,media]`` install can count them. Kinds read
``"<modality>-><what instead>"`` (``video->frames``, ``video->audio``, ``audio->transcript``,
``image->dropped``...).

>>> subs = Substitutions()
>>> subs.add("cremad", "audio->transcript"); subs.add("cremad", "audio->transcript")
>>> subs.as_dict()
{'cremad': {'audio->transcript': 2}}
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Substitutions:
    """Per dataset, how often each modality was replaced by what the model can take."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, dataset: str, kind: str) -> None:
        self.counts.setdefault(dataset, Counter())[kind] += 1

    def merge(self, counts: dict[str, dict[str, int]]) -> None:
        """Add a batch's counts (``Batch.substitutions``)."""
        for dataset, kinds in counts.items():
            self.counts.setdefault(dataset, Counter()).update(kinds)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {name: dict(sorted(counter.items())) for name, counter in sorted(self.counts.items())}

    def lines(self) -> list[str]:
        return [
            f"{name}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counter.items()))
            for name, counter in sorted(self.counts.items())
        ]
