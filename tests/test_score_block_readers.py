"""hba-score's block readers (msgspec, a few hundred KB of lines per call) against the general readers.

The block path must give the same truth, alignment, counts, problems and errors as reading every
line into a dict (iter_samples / iter_jsonl); any block it cannot take whole is read line by line.
Small blocks here make every file mix both paths.
"""

from __future__ import annotations

import random

import orjson
import pytest

from hba_core.errors import InputError
from hba_core.jsonl import iter_jsonl
from hba_core.samples import iter_samples
from hba_core.scoring import line_blocks, load_all, load_predictions, truth_reader
from hba_core.scoring.join import _build_truth
from hba_core.scoring.predictions import _align, iter_predictions

ROWS = [
    {"dataset": "mmsd", "problem": "<video>\nIs it sarcasm?", "answer": "sarcasm", "class_label": "sarcasm"},
    {"dataset": "tess", "problem": 'Say "hi" \\ there\t/', "answer": "anger", "class_label": None},  # gold from answer
    {"dataset": "tess", "problem": "émotion? 日本", "answer": "happy", "class_label": "happy", "videos": ["a b.mp4"]},
    {"dataset": "siq2", "problem": "Why?", "answer": "Because she is happy.", "class_label": None, "texts": [1, 2.5]},
    {"dataset": "mosei_emotion", "problem": "x", "answer": "happy", "class_label": "happy", "images": {"k": None}},
]


def _lines(with_ids: bool) -> list[bytes]:
    out = []
    for i in range(40):
        row = dict(ROWS[i % len(ROWS)], problem=f"{ROWS[i % len(ROWS)]['problem']} #{i % 10}")  # repeats: #2, #3, #4
        if with_ids:
            row = {"id": f"s{i}", **row}
        out.append(orjson.dumps(row))
    # the same rows written other ways: spaces, non-canonical escapes, CRLF, blank and whitespace-only lines
    out[3] = out[3].replace(b'":', b'": ').replace(b'","', b'", "')
    out[5] = out[5].replace(b"/", b"\\/")
    out[7] = out[7].replace("é".encode(), b"\\u00e9")
    out[9] += b"\r"
    out[12] = b" " + out[12]
    out.insert(20, b"")
    out.insert(30, b"  \t")
    return out


@pytest.fixture(params=[64, 700, 1 << 20], ids=["tiny", "small", "whole"])
def block_bytes(request, monkeypatch):
    monkeypatch.setattr(line_blocks, "BLOCK_BYTES", request.param)
    return request.param


@pytest.mark.parametrize("with_ids", [True, False], ids=["ids", "derived"])
def test_truth_from_blocks_matches_the_general_path(tmp_path, block_bytes, with_ids):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(_lines(with_ids)) + b"\n")
    general = _build_truth(iter_samples(path), str(path), ("answer", "videos", "modality"))
    fast, _ = load_all(path, [], pred_fields=("answer", "videos", "modality"))
    assert fast.ids == general.ids and fast.index == general.index
    assert fast.dataset.tolist() == general.dataset.tolist() and fast.gold.tolist() == general.gold.tolist()
    assert fast.embedded == general.embedded
    assert with_ids or sum("#" in i for i in fast.ids) > 0


def test_derived_ids_of_the_block_path_are_sample_ids(tmp_path, block_bytes):
    """Without repeats nothing falls back: the ids the block reader derives are exactly sample_id's."""
    rows = [dict(row, class_label=row["answer"]) if row["dataset"] == "tess" else row for row in ROWS]
    # (a block with a gold label only in "answer" is read line by line)
    lines = [orjson.dumps(dict(row, problem=f"{row['problem']} {i}")) for i, row in enumerate(rows * 12)]
    lines[4] = lines[4].replace(b'":', b'": ')  # a line written another way hashes the same values
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    ids, dataset, gold, _ = truth_reader.TruthJob(str(path), ()).result()
    general = _build_truth(iter_samples(path), str(path), ())
    assert ids == general.ids and dataset.tolist() == general.dataset.tolist()
    assert gold.tolist() == general.gold.tolist()


def test_a_chunk_from_a_worker_keeps_its_ids():
    import pickle

    import numpy as np

    for ids in (["a-1", "b-2#2"], ["with\nnewline", "x"], []):
        chunk = truth_reader.Chunk(ids, np.zeros(len(ids), np.int16), np.zeros(len(ids), np.int16), len(ids))
        assert pickle.loads(pickle.dumps(chunk)).ids == ids


BAD_LINES = {
    "two objects on a line": b'{"dataset": "tess", "answer": "sad"}{"dataset": "tess", "answer": "sad"}',
    "an object over two lines": b'{"dataset": "tess",\n"answer": "sad", "class_label": "sad"}',
    "invalid UTF-8 in an unread field": b'{"dataset": "tess", "answer": "sad", "note": "\xff"}',
    "not an object": b"[1, 2]",
    "not JSON": b'{"dataset": "tess"',
    "a number id": b'{"id": 12, "dataset": "tess", "answer": "sad"}',
    "an unknown dataset": b'{"dataset": "nope", "answer": "sad"}',
    "a label outside the dataset": b'{"dataset": "tess", "answer": "bored", "class_label": "bored"}',
}


@pytest.mark.parametrize("bad", list(BAD_LINES), ids=list(BAD_LINES))
def test_truth_errors_name_the_same_line_and_problem(tmp_path, block_bytes, bad):
    lines = _lines(False)
    lines.insert(25, BAD_LINES[bad])
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InputError) as general:
        _build_truth(iter_samples(path), str(path), ())
    with pytest.raises(InputError) as fast:
        load_all(path, [])
    assert str(fast.value) == str(general.value)
    assert ":26" in str(fast.value)


def _truth(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps({"id": f"s{i}", **ROWS[i % 2]}) for i in range(60)) + b"\n")
    return load_all(path, [])[0]


def _pred_lines(order: str) -> list[bytes]:
    ids = [f"s{i}" for i in range(60)]
    if order == "shuffled":
        random.Random(0).shuffle(ids)
    rows = [{"id": sid, "prediction": "sarcasm" if k % 3 else None, "model": "m"} for k, sid in enumerate(ids)]
    lines = [orjson.dumps(r) for r in rows]
    if order == "problems":
        lines[4] = orjson.dumps({"id": "s3", "prediction": "again"})  # duplicate
        lines[10] = orjson.dumps({"id": "nope", "prediction": "x"})  # unknown id
        lines[15] = orjson.dumps({"id": "s15", "answer": "x"})  # no prediction field
        lines[20] = orjson.dumps({"prediction": "x"})  # no id
        lines[25] = orjson.dumps({"id": "s25", "prediction": 3})  # not a string
        lines[30] = b'{"id": "s30", "prediction": "x"}{"id": "s31", "prediction": "y"}'  # two on a line
        lines[35] = b""
        lines[40] = b"[1]"
        lines[45] = orjson.dumps({"id": "s45", "prediction": "x", "model": "other"})
    return lines


@pytest.mark.parametrize("order", ["in order", "shuffled", "problems"])
def test_predictions_from_blocks_match_the_general_path(tmp_path, block_bytes, order):
    truth = _truth(tmp_path)
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\n".join(_pred_lines(order)) + b"\n")
    bad_g: list = []
    general = _align("m", iter_jsonl(path, bad_g), truth, str(path), False, bad_g)
    bad_f: list = []
    fast = _align("m", iter_predictions(path, bad_f), truth, str(path), False, bad_f)
    assert fast.texts == general.texts and fast.present.tolist() == general.present.tolist()
    assert fast.counts == general.counts and fast.problems == general.problems
    assert (fast.models_named, fast.without_field, fast.fields_seen) == (
        general.models_named,
        general.without_field,
        general.fields_seen,
    )
    if order == "problems":
        assert fast.counts["duplicate"] == 1 and fast.counts["unknown_id"] == 1 and fast.counts["invalid"] == 5
    else:
        assert fast.counts["matched"] == 60


def test_strict_predictions_fail_on_the_first_problem_line(tmp_path, block_bytes):
    truth = _truth(tmp_path)
    path = tmp_path / "p.jsonl"
    lines = _pred_lines("in order")
    lines[33] = orjson.dumps({"id": "s2", "prediction": "again"})
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InputError, match=r"p\.jsonl:34: duplicate prediction for 's2' \(--strict\)"):
        load_predictions(path, "m", truth, strict=True)


@pytest.mark.parametrize(
    "data",
    [
        b'{"id":"a"}\n\n{"id":"b"}\n',
        b'{"id":"a"}\n  \n{"id":"b"}{"id":"c"}\n',
        b'{"id":\n"a"}\n{"id":"b"}{"id":"c"}\n',
        b' {"id":"a"}\n',
        b'{"id":"a"} \n',
        b'{"id":"a","x":"\xff"}\n',
        b'{"id":1}\n',
    ],
)
def test_decode_lines_refuses_what_is_not_one_object_per_line(data):
    import msgspec

    from hba_core.scoring.predictions import _Prediction

    assert line_blocks.decode_lines(msgspec.json.Decoder(_Prediction), data) is None


def test_decode_lines_takes_clean_lines_with_crlf_and_no_final_newline():
    import msgspec

    decoder = msgspec.json.Decoder(dict)
    assert line_blocks.decode_lines(decoder, b'{"a":1}\r\n{"b":"}\\n{"}\n{"c":3}') == [
        {"a": 1},
        {"b": "}\n{"},
        {"c": 3},
    ]


@pytest.mark.parametrize("with_ids", [True, False], ids=["ids", "derived"])
def test_clean_lines_are_taken_as_one_block(with_ids):
    rows = [dict(r, id=f"s{i}") if with_ids else r for i, r in enumerate(ROWS) if r["class_label"] is not None]
    reader = truth_reader._Reader(())
    assert reader.block(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    assert reader.number == len(rows) == len(reader.ids)


def test_ids_are_unique_only_when_no_id_repeats():
    from hba_core.scoring.join import _unique

    assert _unique(["a", "b", "c"]) and _unique([])
    assert not _unique(["a", "b", "a"])
    assert _unique([str(i) for i in range(10_000)]) and not _unique([*map(str, range(10_000)), "77"])
