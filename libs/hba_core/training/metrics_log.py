"""Where a run's metrics go: ``metrics.jsonl`` in the run directory, and optionally TensorBoard or W&B.

``metrics.jsonl`` gets one JSON object per line, appended as the run goes (``tail -f`` works). A fresh
run starts it empty; a resumed run keeps the lines up to the step it resumes from and drops the rest
(they are logged again, so a resumed run's file equals an uninterrupted one's), and a line torn by a
kill. The sinks are imported on first use: tensorboard and wandb are not dependencies of hba.

>>> import tempfile, pathlib
>>> log = MetricsLog(pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl")
>>> log.start(resume_step=None)
>>> log.log({"step": 1, "loss": 0.5})
>>> log.path.read_text()
'{"step":1,"loss":0.5}\\n'
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from hba_core.errors import InputError
from hba_core.jsonl import dumps_line

SINKS = ("none", "tensorboard", "wandb")
Sink = Callable[[dict[str, Any]], None]


def truncate_metrics(path: Path, step: int) -> int:
    """Keep the complete lines of ``path`` whose ``step`` is at most ``step``; returns how many were dropped.

    Reading stops at the first torn line (no newline, or not JSON): a kill can only tear the last one.
    """
    if not path.exists():
        return 0
    kept, dropped = [], 0
    lines = path.read_bytes().splitlines(keepends=True)
    for i, line in enumerate(lines):
        try:
            row = orjson.loads(line) if line.endswith(b"\n") else None
        except orjson.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            dropped += len(lines) - i
            break
        if int(row.get("step", 0)) <= step:
            kept.append(line)
        else:
            dropped += 1
    path.write_bytes(b"".join(kept))
    return dropped


def report_sink(kind: str, run_dir: Path, *, project: str) -> Sink | None:
    """A callable that logs a metrics record to TensorBoard (``RUN/tensorboard``) or W&B (project ``project``;
    ``WANDB_API_KEY`` etc. from the environment); None for ``none``. Records need a ``step``."""
    if kind == "none":
        return None
    if kind == "tensorboard":
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise InputError(
                "--report-to tensorboard", f"needs the tensorboard package ({exc}); pip install tensorboard"
            ) from None

        writer = SummaryWriter(str(run_dir / "tensorboard"))

        def to_tensorboard(record: dict[str, Any]) -> None:
            for key, value in record.items():
                if isinstance(value, int | float) and key != "step":  # nested values (val_scores) stay in the JSONL
                    writer.add_scalar(key, value, record["step"])
            writer.flush()

        return to_tensorboard
    if kind == "wandb":
        try:
            import wandb
        except ImportError:
            raise InputError("--report-to wandb", "needs the wandb package; pip install wandb") from None

        run = wandb.init(project=project, dir=str(run_dir))
        return lambda record: run.log(record, step=record["step"])
    raise InputError("--report-to", f"unknown sink {kind!r}; valid: {', '.join(SINKS)}")


class MetricsLog:
    """``metrics.jsonl`` plus an optional sink; only the main process writes (``main=False`` makes it silent)."""

    def __init__(
        self,
        path: str | Path,
        *,
        main: bool = True,
        report_to: str = "none",
        project: str = "hba",
    ):
        self.path = Path(path)
        self.main = main
        if report_to not in SINKS:
            raise InputError("--report-to", f"unknown sink {report_to!r}; valid: {', '.join(SINKS)}")
        self.report_to, self.project = report_to, project
        self.sink: Sink | None = None

    def start(self, *, resume_step: int | None) -> None:
        """Fresh run (``None``): an empty file. Resumed at ``resume_step``: keep the lines up to it."""
        if not self.main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_bytes(b"")
        else:
            truncate_metrics(self.path, resume_step)
        self.sink = report_sink(self.report_to, self.path.parent, project=self.project)

    def log(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        with open(self.path, "ab") as fh:
            fh.write(dumps_line(record))
        if self.sink is not None:
            self.sink(record)

    def read(self) -> list[dict[str, Any]]:
        """The lines written so far."""
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line.strip()]
