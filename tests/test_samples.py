import orjson
import pytest

from hba_core import schemas
from hba_core.errors import InputError
from hba_core.samples import (
    OFFICIAL_FIELDS,
    group_by_signature,
    iter_samples,
    modality_signature,
    sample_id,
    sample_problems,
)

OFFICIAL_LINE = (
    '{"problem": "<audio>\\nDon\'t forget a jacket.\\nThe above is a speech recording along with the transcript from '
    "a clinical context. What emotion is the speaker expressing? Answer with one word from the following: anger, "
    'disgust, fear, happy, neutral, sad", "answer": "sad", "images": [], "videos": [], "audios": '
    '["cremad_dataset_audio/1077_DFA_SAD_XX.wav"], "dataset": "cremad", "texts": [], "modality_signature": '
    '"text_audio", "ext_video_feats": ["pose/cremad_dataset_audio/1077_DFA_SAD_XX.pt"], "ext_audio_feats": '
    '["opensmile/cremad_dataset_audio/1077_DFA_SAD_XX.pt"], "task": "emotion_cls", "class_label": "sad"}'
)


def test_official_line_loads_and_validates_unchanged(tmp_path):
    path = tmp_path / "final_v8_test_cleaned.jsonl"
    path.write_text(OFFICIAL_LINE + "\n")
    [(line, sample)] = list(iter_samples(path))
    original = orjson.loads(OFFICIAL_LINE)
    assert line == 1
    assert {k: sample[k] for k in OFFICIAL_FIELDS} == original  # every official field untouched
    assert set(sample) == set(OFFICIAL_FIELDS) | {"id", "split"}  # split from the release file's name
    assert sample["split"] == "test"
    assert sample["id"] == sample_id(original) and sample["id"].startswith("cremad-")
    assert sample_problems(sample) == []
    assert schemas.errors(original, "sample") == []


def test_ids_are_stable_and_repeats_are_numbered(tmp_path):
    path = tmp_path / "s.jsonl"
    other = orjson.loads(OFFICIAL_LINE) | {"answer": "happy", "class_label": "happy"}
    mine = '{"id": "mine", "problem": "p", "answer": "a", "dataset": "siq2"}'
    path.write_text("\n".join([OFFICIAL_LINE, orjson.dumps(other).decode(), OFFICIAL_LINE, mine]) + "\n")
    ids = [s["id"] for _, s in iter_samples(path)]
    base = sample_id(orjson.loads(OFFICIAL_LINE))
    assert ids[0] == base and ids[2] == base + "#2" and ids[1] != base and ids[3] == "mine"
    assert [s["id"] for _, s in iter_samples(path)] == ids  # same file, same ids


def test_malformed_line_error_names_file_and_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(OFFICIAL_LINE + "\n{oops\n" + OFFICIAL_LINE + "\n")
    with pytest.raises(InputError, match=r"s.jsonl:2: not valid JSON"):
        list(iter_samples(path))
    errors = []
    assert len(list(iter_samples(path, errors))) == 2 and errors[0].line == 2


def test_registry_checks():
    row = orjson.loads(OFFICIAL_LINE)
    assert any("not a cremad label" in p for p in sample_problems(row | {"class_label": "surprise"}))
    assert any("unknown dataset 'mustard'" in p for p in sample_problems(row | {"dataset": "mustard"}))
    assert any("split" in p for p in sample_problems(row | {"split": "dev"}))
    assert any("answer" in p for p in sample_problems(row | {"answer": 1}))


def test_modality_signature():
    assert modality_signature(text=True, audio=True) == "text_audio"
    assert modality_signature(text=False, video=True) == "video"
    assert modality_signature(text=True, video=True, audio=True) == "text_video_audio"


def test_group_by_signature_keeps_first_appearance_order_and_reads_no_signature_as_text():
    rows = [
        {"id": "a", "modality_signature": "text_video_audio"},
        {"id": "b", "modality_signature": "text"},
        {"id": "c"},  # no signature: text only
        {"id": "d", "modality_signature": "text_video_audio"},
        {"id": "e", "modality_signature": ""},
    ]
    assert group_by_signature(rows) == {"text_video_audio": [0, 3], "text": [1, 2, 4]}
    assert list(group_by_signature(rows[1:])) == ["text", "text_video_audio"]  # groups in order of first row
    by_id_and_signature = group_by_signature(rows, key=lambda r: (r["id"] < "c", r.get("modality_signature")))
    assert list(by_id_and_signature.values()) == [[0], [1], [2], [3], [4]]


def test_fixture_atlas_validates(fixture_data):
    rows = [s for _, s in iter_samples(fixture_data.atlas)]
    assert len(rows) == 16 * 3 * 4
    assert all(sample_problems(s) == [] for s in rows)
    assert len({s["id"] for s in rows}) == len(rows)
