"""hba-score's truth cache: used only while the file is unchanged, never a different answer, never a failure."""

from __future__ import annotations

import os
import stat

import orjson
import pytest

from hba_core.scoring import load_all, truth_cache
from hba_core.scoring.truth_cache import TruthEntry

ROWS = [
    {"dataset": "mmsd", "problem": "<video>\nIs it sarcasm?", "answer": "sarcasm", "class_label": "sarcasm"},
    {"dataset": "tess", "problem": "émotion?", "answer": "happy", "class_label": "happy", "videos": ["a.mp4"]},
    {"dataset": "siq2", "problem": "Why?", "answer": "Because she is happy.", "class_label": None},
]


def _write(path, n=30, tag="", repeat=False):
    rows = [dict(ROWS[i % 3], problem=f"{ROWS[i % 3]['problem']} {tag}{i}") for i in range(n)]
    if repeat:
        rows.append(dict(rows[4]))  # identical content: numbered #2 by the general path
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def _preds(path, truth):
    path.write_bytes(b"".join(orjson.dumps({"id": i, "prediction": "sarcasm"}) + b"\n" for i in truth.ids))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HBA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(truth_cache, "MIN_BYTES", 0)
    return tmp_path / "cache" / "truth"


def _load(path, **kw):
    truth, _ = load_all(path, [], **kw)
    return truth.ids, truth.dataset.tolist(), truth.gold.tolist()


def test_a_second_read_comes_from_the_cache_and_agrees(tmp_path, cache):
    path = tmp_path / "t.jsonl"
    _write(path)
    uncached = _load(path, cache=False)
    assert not cache.exists()  # --no-cache writes nothing
    assert _load(path) == uncached
    (entry,) = cache.iterdir()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o666 & ~_umask()
    stored = TruthEntry.of(str(path)).load()
    assert stored is not None and stored[0] == uncached[0]
    assert _load(path) == uncached


def test_an_edited_file_is_read_again_even_with_its_old_size_and_mtime(tmp_path, cache):
    path = tmp_path / "t.jsonl"
    _write(path, tag="a")
    before = _load(path)
    st = os.stat(path)
    _write(path, tag="b")  # same size, other content
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even the modification time put back (ctime moves)
    assert os.path.getsize(path) == st.st_size
    after = _load(path)
    assert after != before and after == _load(path, cache=False)
    assert len(list(cache.iterdir())) == 1  # the entry of the old content is gone


def test_repeated_rows_are_cached_as_the_general_path_numbers_them(tmp_path, cache):
    path = tmp_path / "t.jsonl"
    _write(path, repeat=True)
    first = _load(path)
    assert sum(i.endswith("#2") for i in first[0]) == 1
    assert _load(path) == first == _load(path, cache=False)


def test_a_broken_entry_is_read_around_and_replaced(tmp_path, cache):
    path = tmp_path / "t.jsonl"
    _write(path)
    expected = _load(path)
    (entry,) = cache.iterdir()
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    assert TruthEntry.of(str(path)).load() is None
    assert _load(path) == expected
    assert TruthEntry.of(str(path)).load() is not None


def test_a_cache_that_cannot_be_written_costs_nothing_but_speed(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("HBA_CACHE_DIR", str(blocker / "cache"))  # under a file: cannot be created
    monkeypatch.setattr(truth_cache, "MIN_BYTES", 0)
    path = tmp_path / "t.jsonl"
    _write(path)
    assert _load(path) == _load(path, cache=False)


def test_predictions_score_the_same_from_a_cached_truth(tmp_path, cache):
    from hba_core.scoring import score

    path, preds = tmp_path / "t.jsonl", tmp_path / "p.jsonl"
    _write(path)
    truth, _ = load_all(path, [], cache=False)
    _preds(preds, truth)
    reports, cached = [], []
    for _ in range(2):  # the first run writes the entry, the second reads it
        truth, models = load_all(path, [(preds, "m")])
        reports.append(score(truth, models))
        cached.append(truth.cached)
    assert reports[0] == reports[1] and cached == [False, True]
    assert list(cache.iterdir())


def test_small_files_are_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HBA_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "t.jsonl"
    _write(path)
    _load(path)
    assert TruthEntry.of(str(path)) is None and not (tmp_path / "cache").exists()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_the_cli_says_when_the_truth_came_from_the_cache(tmp_path, cache):
    import subprocess
    import sys

    path, preds = tmp_path / "t.jsonl", tmp_path / "p.jsonl"
    _write(path)
    truth, _ = load_all(path, [], cache=False)
    _preds(preds, truth)
    code = "import sys; from hba_core.scoring import truth_cache; truth_cache.MIN_BYTES = 0; "
    code += "from hba_tools.score import main; sys.exit(main())"
    env = {**os.environ, "HBA_CACHE_DIR": str(cache.parent)}
    runs = [
        subprocess.run([sys.executable, "-c", code, "--truth", str(path), str(preds), *flag],
                       capture_output=True, text=True, env=env)
        for flag in ([], [], ["--no-cache"])
    ]  # fmt: skip
    assert [r.returncode for r in runs] == [0, 0, 0]
    assert ["from the truth cache" in r.stderr for r in runs] == [False, True, False]
    assert runs[0].stdout == runs[1].stdout == runs[2].stdout
