"""Agreement between two sets of binary judgments (judge vs judge, judge vs human): Cohen's kappa.

Each file is JSONL with ``id`` and ``correct`` (true/false); judgments whose ``correct`` is null
(unparseable, error, skipped) and ids present in only one file are counted and left out.

>>> kappa([[40, 10], [5, 45]])
0.7
"""

from __future__ import annotations

from dataclasses import dataclass

from hba_core.errors import InputError
from hba_core.jsonl import PathLike, display_name, iter_jsonl


@dataclass(frozen=True)
class Agreement:
    table: list[list[int]]  # table[a][b]: a, b = 0 (false) / 1 (true) in files A and B
    only_a: int  # ids in A only
    only_b: int
    undecided: int  # ids in both where either side has correct = null

    @property
    def n(self) -> int:
        return sum(map(sum, self.table))

    @property
    def observed(self) -> float:
        return (self.table[0][0] + self.table[1][1]) / self.n if self.n else float("nan")

    @property
    def kappa(self) -> float:
        return kappa(self.table)

    def report(self, name_a: str = "A", name_b: str = "B") -> str:
        t = self.table
        k = self.kappa
        lines = [
            f"Cohen's kappa: {'undefined' if k != k else f'{k:.4f}'}  (n={self.n}, observed agreement "
            f"{self.observed:.4f})",
            "",
            f"{'':>14}{name_b + ' true':>14}{name_b + ' false':>14}",
            f"{name_a + ' true':>14}{t[1][1]:>14}{t[1][0]:>14}",
            f"{name_a + ' false':>14}{t[0][1]:>14}{t[0][0]:>14}",
            "",
            f"left out: {self.only_a} only in {name_a}, {self.only_b} only in {name_b}, "
            f"{self.undecided} with correct = null on either side",
        ]
        return "\n".join(lines)


def kappa(table: list[list[int]]) -> float:
    """Cohen's kappa of a 2x2 table; NaN when chance agreement is 1 (both raters constant and equal)."""
    n = sum(map(sum, table))
    if n == 0:
        return float("nan")
    p_obs = (table[0][0] + table[1][1]) / n
    a_true, b_true = (table[1][0] + table[1][1]) / n, (table[0][1] + table[1][1]) / n
    p_exp = a_true * b_true + (1 - a_true) * (1 - b_true)
    if p_exp == 1:
        return float("nan")
    return round((p_obs - p_exp) / (1 - p_exp), 12)


def read_verdicts(path: PathLike) -> dict[str, bool | None]:
    """id -> correct (None for null). A line without an id, a non-boolean ``correct`` or a repeated id is an error."""
    found: dict[str, bool | None] = {}
    name = display_name(path)
    for line, row in iter_jsonl(path):
        rid, correct = row.get("id"), row.get("correct")
        if not isinstance(rid, str) or not rid:
            raise InputError(f"{name}:{line}", "no 'id'")
        if correct is not None and not isinstance(correct, bool):
            raise InputError(f"{name}:{line}", f"'correct' must be true, false or null, got {correct!r}")
        if rid in found:
            raise InputError(f"{name}:{line}", f"id {rid!r} appears twice")
        found[rid] = correct
    return found


def agreement(path_a: PathLike, path_b: PathLike) -> Agreement:
    """Match two judgment files by id and count the 2x2 table."""
    a, b = read_verdicts(path_a), read_verdicts(path_b)
    table = [[0, 0], [0, 0]]
    undecided = 0
    for rid, va in a.items():
        if rid not in b:
            continue
        vb = b[rid]
        if va is None or vb is None:
            undecided += 1
        else:
            table[int(va)][int(vb)] += 1
    result = Agreement(table, sum(1 for r in a if r not in b), sum(1 for r in b if r not in a), undecided)
    if result.n == 0:
        raise InputError(
            f"{display_name(path_a)} vs {display_name(path_b)}",
            f"nothing to compare: no id has true/false in both files ({result.only_a} only in the first, "
            f"{result.only_b} only in the second, {undecided} with correct = null on either side)",
        )
    return result
