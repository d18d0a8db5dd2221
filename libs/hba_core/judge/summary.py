"""The counts of one judge run and its end-of-run report (stderr): statuses, cache hits, requests, accuracy
previews per dataset, mean ratings, and what the reference protocol would have done differently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hba_core.jsonl import LineError
from hba_core.judge.replies import RATING_NAMES

if TYPE_CHECKING:
    from hba_core.judge.items import Item


@dataclass
class Summary:
    """What one run did; ``lines()`` is its report, ``all_failed`` makes the command fail."""

    judged: int = 0  # judgments written
    by_status: Counter[str] = field(default_factory=Counter)
    cached: int = 0
    requests: int = 0  # HTTP requests, retries included
    not_selected: int = 0  # samples of other datasets
    bad_lines: list[LineError] = field(default_factory=list)
    no_question: int = 0
    unmatched: list[str] = field(default_factory=list)  # prediction ids that match no sample of --truth
    accuracy: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # dataset -> (correct, ok, all)
    ratings: dict[str, float] = field(default_factory=dict)  # rater mode: mean per dimension
    elapsed_s: float = 0.0
    protocol: str = "hba"
    lenient: int = 0  # reference protocol, --lenient-reference-fallback: non-JSON replies read as verdicts
    lenient_correct: int = 0  # ... of which counted correct ("true" somewhere in the reply)
    lenient_available: int = 0  # without the flag: replies the reference would have read leniently
    reference_would_drop: int | None = None  # rows the reference drops (answer not in its annotations)
    question_lookup_changed: int = 0  # rows whose looked-up question is another row's (shared answer)

    def _reference_lines(self) -> list[str]:
        out = [
            f"  reference lenient fallback: {self.lenient} non-JSON replies read as verdicts "
            f"({self.lenient_correct} correct because they contain 'true')"
            + ("" if self.lenient else f"; off: {self.lenient_available} such replies stay unparseable")
        ]
        if self.reference_would_drop is None:
            out.append(
                "  the reference drops rows whose answer is not in its annotation tables from the denominator; "
                "pass --reference-annotations DIR to count them (hba keeps every row)"
            )
        else:
            out.append(
                f"  the reference would drop {self.reference_would_drop} rows (answer not in its annotations) "
                "from the denominator; hba keeps them, judged with their own question"
            )
        if self.question_lookup_changed:
            out.append(f"  {self.question_lookup_changed} rows were judged with a looked-up question unlike their own")
        return out

    @property
    def all_failed(self) -> bool:
        """Requests were made and not one got an answer (dead server, wrong model...): the run is a failure."""
        s = self.by_status
        return s["error"] > 0 and s["ok"] == 0 and s["unparseable"] == 0

    def lines(self) -> list[str]:
        """The end-of-run report for stderr."""
        s = self.by_status
        out = [
            f"{self.judged} judgments: ok {s['ok']}, unparseable {s['unparseable']}, error {s['error']}, "
            f"skipped {s['skipped']}; {self.cached} from cache, {self.requests} requests in {self.elapsed_s:.1f} s"
        ]
        for name, (right, ok, total) in sorted(self.accuracy.items()):
            # The paper's accuracy counts every sample (unparseable, error, skipped = not correct); hba-score
            # computes the official figure, this is a preview.
            out.append(f"  {name}: {right}/{total} correct ({right / total:.3f}); {ok} judged ok")
        if self.ratings:
            out.append("  mean ratings: " + ", ".join(f"{k} {v:.3f}" for k, v in self.ratings.items()))
        if self.protocol == "reference":
            out.extend(self._reference_lines())
        if self.not_selected:
            out.append(f"  {self.not_selected} samples of other datasets were not judged (see --datasets)")
        if self.unmatched:
            shown = ", ".join(repr(i) for i in self.unmatched[:5]) + (" ..." if len(self.unmatched) > 5 else "")
            out.append(f"  {len(self.unmatched)} predictions match no sample id and were not judged: {shown}")
        if self.no_question:
            out.append(f"  warning: {self.no_question} samples had no recoverable question (judged without one)")
        if self.all_failed:
            out.append("  every judgment request failed: nothing was judged (see the 'error' field of --out)")
        for problem in self.bad_lines[:20]:
            out.append(f"  bad line skipped: {problem}")
        if len(self.bad_lines) > 20:
            out.append(f"  ... and {len(self.bad_lines) - 20} more bad lines")
        return out


def tally(summary: Summary, items: list[Item], rows: list[dict[str, Any]], *, rater: bool) -> None:
    """Count the written rows into ``summary``: statuses, cache hits, accuracy per dataset, mean ratings."""
    ratings: dict[str, list[int]] = {name: [] for name in RATING_NAMES}
    for item, row in zip(items, rows):
        summary.by_status[row["status"]] += 1
        summary.cached += item.cached
        if not rater:
            right, ok, total = summary.accuracy.get(item.dataset, (0, 0, 0))
            summary.accuracy[item.dataset] = (right + (row["correct"] is True), ok + (row["status"] == "ok"), total + 1)
        for name, value in row.get("ratings", {}).items():
            ratings[name].append(value)
    summary.ratings = {name: sum(v) / len(v) for name, v in ratings.items() if v}
