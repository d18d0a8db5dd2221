"""The adapters on the real annotation files of nine datasets (../shared/annotations; skipped when absent).

Complete official splits must give the paper's Table 7 counts (less only the clips missing from MELD.Raw);
seeded splits must keep every recording (and speaker, where grouped) in one split.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from hba_core import registry
from hba_core.convert import Reject, build_source
from hba_core.samples import sample_problems

pytestmark = pytest.mark.annotations


def counts(annotations, source, folder=None):
    samples, rejects = [], []
    for item in build_source(source, annotations / (folder or source), check_media=False):
        (rejects if isinstance(item, Reject) else samples).append(item)
    per = Counter((s["dataset"], s["split"]) for s in samples)
    return samples, rejects, {d: [per[(d, s)] for s in registry.SPLITS] for d in registry.source(source).datasets}


def test_meld_official_splits(annotations):
    samples, rejects, got = counts(annotations, "meld")
    # Table 7: 9988/1108/2610; MELD.Raw lacks the clips of train dia125_utt3 and dev dia110_utt7.
    assert got == {"meld_senti": [9989, 1109, 2610], "meld_emotion": [9989, 1109, 2610]}
    assert not rejects
    ids = {
        (s["split"], s["metadata"]["source_ids"]["dialogue_id"], s["metadata"]["source_ids"]["utterance_id"])
        for s in samples
    }
    assert ("train", 125, 3) in ids and ("val", 110, 7) in ids
    assert Counter(s["class_label"] for s in samples if s["dataset"] == "meld_emotion")["happy"] == 2308  # joy


def test_daicwoz_official_splits(annotations):
    _, rejects, got = counts(annotations, "daicwoz")
    assert got == {"daicwoz": list(registry.dataset("daicwoz").paper_counts)} and not rejects


def test_intentqa_val_test(annotations):
    samples, rejects, got = counts(annotations, "intentqa")
    paper = registry.dataset("intentqa").paper_counts
    assert got["intentqa"][1:] == list(paper[1:])
    assert [r.reason for r in rejects] == ["annotation file not found: train.csv (the train split is empty)"]
    assert all(s["answer"] in s["metadata"]["options"] for s in samples)


def test_mustard_tess_mmpsy_match_the_paper_with_seeded_splits(annotations):
    for source in ("mustard", "tess"):
        _, rejects, got = counts(annotations, source)
        assert not rejects
        for name, numbers in got.items():
            assert numbers == list(registry.dataset(name).paper_counts), name
    _, rejects, got = counts(annotations, "mmpsy")
    assert got == {d: list(registry.source("mmpsy").paper_counts) for d in registry.source("mmpsy").datasets}


def test_seeded_splits_keep_groups_apart(annotations):
    for source, key in (("cremad", "actor"), ("tess", "file"), ("mustard", "id"), ("mmpsy", "user_id")):
        samples, _, _ = counts(annotations, source)
        where = defaultdict(set)
        for s in samples:
            where[s["metadata"]["source_ids"][key]].add(s["split"])
        assert all(len(v) == 1 for v in where.values()), source


def test_cremad_all_clips(annotations):
    samples, rejects, got = counts(annotations, "cremad")
    assert sum(got["cremad"]) == sum(registry.dataset("cremad").paper_counts) == 7442 and not rejects
    assert all(abs(a - b) <= 60 for a, b in zip(got["cremad"], registry.dataset("cremad").paper_counts))


def test_mosei_standard_folds(annotations):
    _, rejects, got = counts(annotations, "mosei")
    assert got["mosei_senti"] == [16327, 1871, 4662]  # paper 16326/1871/4659
    assert len(rejects) == 399 and {r.reason for r in rejects} == {
        "not in the standard folds: video in no official split"
    }


def test_siq2_val_is_test(annotations):
    _, rejects, got = counts(annotations, "siq2")
    assert got == {"siq2": [6159, 0, 943]} and not rejects  # paper 5562/0/875: videos still online


def test_urfunny_v1_pickles(annotations):
    _, rejects, got = counts(annotations, "urfunny", "urfunny/v1")
    assert got == {"urfunny": [10598, 2626, 3290]} and not rejects


def test_every_real_sample_passes_the_schema_and_registry(annotations):
    for source in ("meld", "cremad", "daicwoz", "mmpsy", "mustard", "siq2"):
        samples, _, _ = counts(annotations, source)
        for s in samples[:300]:
            assert sample_problems(s) == [], (source, s["id"])
