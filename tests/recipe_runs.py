"""Running a paper recipe end to end in tests: loopback OpenAI-compatible servers and the recipe's shell script."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def fake_servers(*modes: tuple[str, ...]) -> Iterator[list[str]]:
    """One tests/openai_server.py per mode (its extra arguments), on loopback; yields their base URLs."""
    servers = [
        subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "openai_server.py"), "--latency", "0", *mode],
            stdout=subprocess.PIPE,
            text=True,
        )
        for mode in modes
    ]
    try:
        yield [server.stdout.readline().strip() for server in servers]
    finally:
        for server in servers:
            server.terminate()
            server.wait()


def run_table4(out: Path, fixtures_root: Path, judge_url: str, **env: str) -> subprocess.CompletedProcess:
    """recipes/table4.sh with a local judge at ``judge_url`` (a throwaway key, a cache under ``out``)."""
    judge = {
        "HBA_JUDGE_BASE_URL": judge_url,
        "HBA_JUDGE_MODEL": "fake-judge",
        "OPENAI_API_KEY": "sk-test",
        "HBA_CACHE_DIR": str(out / "cache"),
    }
    return subprocess.run(
        ["bash", "recipes/table4.sh", f"OUT={out}", f"FIXTURES={fixtures_root}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **judge, **env},
        timeout=1800,
    )
