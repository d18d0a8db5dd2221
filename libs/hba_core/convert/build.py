"""``hba-convert build``'s work: run the adapters of one or more sources into a samples file and a
rejects file, with the failure policy in one place.

- A rejected row goes to the rejects file with its reason (``strict``: the first one is an error).
- ``keep_going`` (``build all``): a source without its release folder is skipped, and a source whose
  release is broken becomes one ``source failed`` reject, so one bad release does not sink the others;
  ``strict`` turns both into errors.

>>> default_rejects_path("meld.jsonl")
'meld.rejects.jsonl'
>>> default_rejects_path("-")
'hba-convert-rejects.jsonl'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hba_core.convert.base import BuildSummary, Reject, build_source
from hba_core.errors import InputError
from hba_core.jsonl import atomic_output, dumps_line


def default_rejects_path(out: str, rejects: str | None = None) -> str:
    """``rejects`` if given, else ``<out>.rejects.jsonl`` (``hba-convert-rejects.jsonl`` when ``out`` is ``-``)."""
    if rejects:
        return rejects
    return "hba-convert-rejects.jsonl" if out == "-" else str(Path(out).with_suffix("")) + ".rejects.jsonl"


@dataclass
class BuildReport:
    """What one build wrote: per source its summary, and the rejects written."""

    out: str
    rejects_path: str
    summaries: list[BuildSummary] = field(default_factory=list)
    rejects: int = 0

    @property
    def samples(self) -> int:
        return sum(sum(s.samples.values()) for s in self.summaries)

    def line(self) -> str:
        return f"wrote {self.samples} samples to {self.out}; {self.rejects} rejects to {self.rejects_path}"


def build_files(
    jobs: list[tuple[str, Path]],
    out: str,
    rejects_path: str,
    *,
    check_media: bool = True,
    strict: bool = False,
    keep_going: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> BuildReport:
    """Build each ``(source, release folder)`` of ``jobs`` into ``out`` (samples JSONL, ``-`` = stdout) and
    ``rejects_path``, both written atomically; ``log`` gets one line per source (counts, time, failures)."""
    report = BuildReport(out, rejects_path)
    with atomic_output(out) as sink, atomic_output(rejects_path) as reject_sink:
        for name, folder in jobs:
            if keep_going and not folder.is_dir():
                if strict:
                    raise InputError(str(folder), f"no release folder for source {name}")
                log(f"{name}: skipped, no folder {folder}")
                continue
            summary = BuildSummary(name)
            started = time.perf_counter()
            try:
                for item in build_source(name, folder, check_media=check_media, strict=strict, summary=summary):
                    if isinstance(item, Reject):
                        reject_sink.write(dumps_line(item.as_json()))
                        report.rejects += 1
                    else:
                        sink.write(dumps_line(item))
            except InputError as exc:
                if strict or not keep_going:
                    raise
                reject_sink.write(dumps_line(Reject(name, exc.where, f"source failed: {exc.message}").as_json()))
                report.rejects += 1
                summary.rejects["source failed"] += 1
                log(f"{name}: FAILED: {exc}")
            log(f"{summary.line()} in {time.perf_counter() - started:.1f} s")  # progress for a person, not a figure
            report.summaries.append(summary)
    return report
