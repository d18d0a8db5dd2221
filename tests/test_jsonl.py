import gzip
import os
import subprocess
import sys

import orjson
import pytest

from hba_core.errors import InputError
from hba_core.jsonl import ResumableWriter, atomic_output, iter_jsonl, write_jsonl


def test_roundtrip_plain_and_gzip(tmp_path):
    rows = [{"id": str(i), "x": i} for i in range(5)]
    for name in ("a.jsonl", "a.jsonl.gz"):
        path = tmp_path / name
        assert write_jsonl(path, rows) == 5
        assert [r for _, r in iter_jsonl(path)] == rows
    assert gzip.open(tmp_path / "a.jsonl.gz").read().count(b"\n") == 5


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": \n[1, 2]\n{"id": "b"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:3: not valid JSON"):
        list(iter_jsonl(path))
    errors = []
    good = [(line, row["id"]) for line, row in iter_jsonl(path, errors)]
    assert good == [(1, "a"), (5, "b")]  # nothing else lost
    assert [(e.line, e.message.split(" (")[0]) for e in errors] == [
        (3, "not valid JSON"),
        (4, "expected a JSON object, got list"),
    ]


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(iter_jsonl(tmp_path / "nope.jsonl"))


def test_atomic_output_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"id": "old"}])
    with pytest.raises(RuntimeError):
        with atomic_output(path) as out:
            out.write(b'{"id": "new"}\n')
            raise RuntimeError("crash mid-write")
    assert path.read_text() == '{"id":"old"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind


def test_resumable_writer_drops_torn_line_and_resumes(tmp_path):
    path = tmp_path / "out.jsonl"
    with ResumableWriter(path) as w:
        w.write([{"id": "a"}, {"id": "b"}])
    with open(path, "ab") as fh:
        fh.write(b'{"id": "c", "tr')  # killed mid-write
    w = ResumableWriter(path)
    assert w.done == {"a", "b"}
    w.write(row for row in [{"id": "c"}])
    w.close()
    assert [r["id"] for _, r in iter_jsonl(path)] == ["a", "b", "c"]


def test_resumable_writer_survives_sigkill(tmp_path):
    path = tmp_path / "out.jsonl"
    script = (
        "import os, signal\n"
        "from hba_core.jsonl import ResumableWriter\n"
        f"w = ResumableWriter({str(path)!r})\n"
        "for i in range(1000):\n"
        "    if str(i) in w.done: continue\n"
        "    w.write([{'id': str(i)}])\n"
        "    if i == 400 and not os.environ.get('RESUMED'): os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    first = subprocess.run([sys.executable, "-c", script])
    assert first.returncode == -9
    subprocess.run([sys.executable, "-c", script], env={**os.environ, "RESUMED": "1"}, check=True)
    ids = [orjson.loads(line)["id"] for line in path.read_bytes().splitlines()]
    assert ids == [str(i) for i in range(1000)]
