"""Data-parallel hba-predict: shards by rank, one part per rank, one merge; kill-and-resume across ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402

from hba_core.predict_parallel import merge_parts, part_path, parts_dir  # noqa: E402


def _test_split(fixtures, path, keep=None):
    rows = [json.loads(line) for line in fixtures.atlas.read_text().splitlines()]
    rows = [r for r in rows if r["split"] == "test" and (keep is None or r["dataset"] in keep)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _args(fixtures, model, samples, out):
    # batch size 1: no padding, so a sample's prediction does not depend on which rank or batch it lands in
    return [
        "--model", str(model), "--samples", str(samples), "--data-root", str(fixtures.data), "--out", str(out),
        "--batch-size", "1", "--max-new-tokens", "8", "--workers", "0",
    ]  # fmt: skip


def _write(path, rows, torn=b""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + torn)


def test_merge_parts_orders_dedupes_and_names_missing(tmp_path):
    out = tmp_path / "preds.jsonl"
    _write(out, [{"id": "old"}, {"id": "b", "prediction": "from out"}])
    _write(part_path(out, 0, 2), [{"id": "c"}, {"id": "a"}])
    _write(part_path(out, 1, 2), [{"id": "b", "prediction": "again"}], torn=b'{"id": "d"')  # a kill mid-write
    (parts_dir(out) / ".rank-00000-of-00002.jsonl.lock").touch()
    result = merge_parts(out, ["a", "b", "c", "d"])
    assert [r["id"] for r in _rows(out)] == ["a", "b", "c", "old"]  # sample order, then rows of other samples
    assert _rows(out)[1]["prediction"] == "from out"  # --out's row wins; the second copy is dropped
    assert result == {"missing_ids": ["d"], "duplicates_dropped": 1}
    assert not parts_dir(out).exists()


def test_stdout_is_refused_with_several_processes(fixtures, checkpoint, tmp_path):
    from hba_tools.predict import main

    samples = _test_split(fixtures, tmp_path / "test.jsonl", keep={"cremad"})
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    result = CliRunner().invoke(main, _args(fixtures, checkpoint, samples, "-"), env=env)
    assert result.exit_code == 2
    assert "--out - with 2 processes: give a file" in result.output


def test_one_process_finishes_a_parallel_run_that_died(fixtures, checkpoint, tmp_path):
    """Parts left by a killed 2-rank run: a single process resumes from them, merges, and removes them."""
    from hba_tools.predict import main

    samples = _test_split(fixtures, tmp_path / "test.jsonl", keep={"cremad", "mmpsy_depression", "mimeqa"})
    reference = tmp_path / "single.jsonl"
    result = CliRunner().invoke(main, _args(fixtures, checkpoint, samples, reference))
    assert result.exit_code == 0, result.output
    expected = {r["id"]: r for r in _rows(reference)}
    ids = [json.loads(line)["id"] for line in samples.read_text().splitlines()]
    out = tmp_path / "preds.jsonl"
    _write(part_path(out, 1, 2), [expected[i] for i in ids[1:6:2]], torn=b'{"id": "x')
    _write(part_path(out, 0, 2), [expected[ids[0]]])
    result = CliRunner().invoke(main, _args(fixtures, checkpoint, samples, out))
    assert result.exit_code == 0, result.output
    assert f"{len(ids) - 4} predictions written (4 already there)" in result.output
    assert "every sample once" in result.output
    merged = _rows(out)
    assert [r["id"] for r in merged] == ids  # sample order
    assert {r["id"]: r for r in merged} == expected
    assert not parts_dir(out).exists()


# ---------------------------------------------------------------- real launchers (several processes)


def _torchrun(fixtures, model, samples, out):
    env = {**os.environ, "HBA_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.Popen(
        [*cmd, "-m", "hba_tools.predict", *_args(fixtures, model, samples, out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _single(fixtures, model, samples, out):
    env = {**os.environ, "HBA_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hba_tools.predict", *_args(fixtures, model, samples, out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return {r["id"]: r for r in _rows(out)}


def _rank_of(process, psutil):
    try:
        return process.environ().get("RANK")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@pytest.mark.slow
def test_two_torchrun_processes_match_one_then_survive_a_killed_rank(fixtures, checkpoint, tmp_path):
    psutil = pytest.importorskip("psutil")
    samples = _test_split(fixtures, tmp_path / "test.jsonl")
    ids = [json.loads(line)["id"] for line in samples.read_text().splitlines()]
    expected = _single(fixtures, checkpoint, samples, tmp_path / "single.jsonl")

    out = tmp_path / "two.jsonl"
    run = _torchrun(fixtures, checkpoint, samples, out)
    log, _ = run.communicate(timeout=600)
    assert run.returncode == 0, log
    assert "every sample once" in log
    assert [r["id"] for r in _rows(out)] == ids and {r["id"]: r for r in _rows(out)} == expected
    assert not parts_dir(out).exists()

    killed = tmp_path / "killed.jsonl"
    run = _torchrun(fixtures, checkpoint, samples, killed)
    part = part_path(killed, 1, 2)
    deadline = time.monotonic() + 600
    while not (part.exists() and part.read_bytes().count(b"\n") >= 3):  # rank 1 is mid-run
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before rank 1 wrote 3 rows"
        time.sleep(0.02)
    ranks = [p for p in psutil.Process(run.pid).children(recursive=True) if _rank_of(p, psutil) == "1"]
    os.kill(min(ranks, key=lambda p: p.create_time()).pid, signal.SIGKILL)
    log, _ = run.communicate(timeout=600)
    assert run.returncode != 0 and not killed.exists()  # killed before the merge
    left = part.read_bytes().count(b"\n")
    assert 3 <= left < len(ids) // 2

    run = _torchrun(fixtures, checkpoint, samples, killed)
    log, _ = run.communicate(timeout=600)
    assert run.returncode == 0, log
    assert "every sample once" in log
    assert killed.read_bytes() == out.read_bytes()  # the same file as the uninterrupted run
    assert not parts_dir(killed).exists()
