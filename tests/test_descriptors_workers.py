"""hba-descriptors with worker processes leaves no child behind; a bad samples file leaves no store behind."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from hba_core.jsonl import iter_jsonl, write_jsonl

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:google.*")
pytest.importorskip("mediapipe")
pytest.importorskip("opensmile")


def _children() -> list[tuple[int, str, str]]:
    """(pid, state, command line) of this process's children, from /proc (zombies included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == os.getpid():
            found.append((int(entry.name), state, cmdline))
    return found


def _workers_left() -> list[tuple[int, str, str]]:
    # multiprocessing's resource tracker lives as long as this process by design: not a worker
    return [c for c in _children() if "resource_tracker" not in c[2]]


@pytest.fixture
def six_rows(fixture_data, tmp_path):
    samples = tmp_path / "s.jsonl"
    write_jsonl(samples, [row for _, row in iter_jsonl(fixture_data.atlas) if row.get("videos")][:3])
    return samples


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads children from /proc")
def test_two_workers_are_reaped_after_the_run(fixture_data, six_rows, tmp_path):
    from hba_core.descriptors.extract import run_extract
    from hba_core.descriptors.store import open_store

    before = _workers_left()
    summary = run_extract(six_rows, fixture_data.data, tmp_path / "d.zarr", ("pose", "audio"), workers=2)
    assert summary.extracted > 0 and summary.errors == []
    assert multiprocessing.active_children() == []
    assert _workers_left() == before  # none alive, none defunct
    assert set(open_store(tmp_path / "d.zarr").index("pose"))  # and the work is in the store


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads children from /proc")
def test_workers_are_reaped_when_the_consumer_stops_early(fixture_data, six_rows):
    from hba_core.descriptors.extract import _results, plan_jobs
    from hba_core.descriptors.video import VideoConfig

    before = _workers_left()
    jobs, _, _ = plan_jobs(six_rows, fixture_data.data, ("audio",))
    results = _results(jobs, VideoConfig(), workers=2)
    assert next(results).key == jobs[0].key
    results.close()  # as on an error or Ctrl-C in the caller's loop
    assert multiprocessing.active_children() == []
    assert _workers_left() == before


def test_a_missing_samples_file_creates_no_store(fixture_data, tmp_path):
    from hba_tools.descriptors import main as cli

    store = tmp_path / "d.zarr"
    result = CliRunner().invoke(
        cli,
        ["extract", "--samples", str(tmp_path / "nope.jsonl"), "--root", str(fixture_data.data), "--store", str(store)],
    )
    assert result.exit_code == 1 and "nope.jsonl" in result.output
    assert not store.exists()


def test_a_broken_samples_line_creates_no_store(fixture_data, tmp_path):
    from hba_tools.descriptors import main as cli

    samples = tmp_path / "s.jsonl"
    samples.write_text('{"dataset": "cremad", "videos": ["video/clip0.mp4"]}\n{not json\n')
    store = tmp_path / "d.zarr"
    result = CliRunner().invoke(
        cli, ["extract", "--samples", str(samples), "--root", str(fixture_data.data), "--store", str(store)]
    )
    assert result.exit_code == 1 and "s.jsonl:2" in result.output, result.output
    assert not store.exists()
