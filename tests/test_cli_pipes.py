"""A reader that stops early (`| head`) ends an hba tool quietly, as it ends any Unix tool: status 141
(SIGPIPE), no BrokenPipeError traceback on stderr."""

from __future__ import annotations

import subprocess

from hba_core.jsonl import write_jsonl
from hba_core.samples import iter_samples


def test_a_closed_stdout_ends_the_tool_quietly(fixtures, tmp_path):
    rows = [s for _, s in iter_samples(fixtures.atlas)]
    many = [{**row, "id": f"{row['id']}-{k}"} for k in range(40) for row in rows]  # ~10k rows: > a pipe's buffer
    write_jsonl(tmp_path / "many.jsonl", many)
    done = subprocess.run(
        ["bash", "-c", 'hba-convert select many.jsonl | head -c 100 > /dev/null; echo "status ${PIPESTATUS[0]}"'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "status 141", done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
