import pytest

from hba_core import registry
from hba_core.errors import UnknownNameError


def test_sixteen_official_datasets_ten_tasks():
    names = registry.dataset_names()
    assert sorted(names) == sorted(
        [
            "chsimsv2",
            "cremad",
            "daicwoz",
            "meld_emotion",
            "meld_senti",
            "mmpsy_anxiety",
            "mmpsy_depression",
            "mmsd",
            "mosei_emotion",
            "mosei_senti",
            "ptsd_in_the_wild",
            "tess",
            "urfunny",
            "intentqa",
            "mimeqa",
            "siq2",
        ]
    )
    codes = ["SEN", "EMO", "SOC", "INT", "NVC", "HUM", "SAR", "ANX", "DEP", "PTSD"]
    assert sorted(registry.get().tasks) == sorted(codes)


def test_unified_label_space_has_25_classes_in_release_order():
    classes = registry.global_classes()
    assert len(classes) == 25
    # indices as in the official release's unified label map
    assert classes[0] == ("sentiment_intensity", "highly negative")
    assert classes[12] == ("emotion", "calm")
    assert classes[14] == ("emotion", "surprise")
    assert classes[18] == ("depression", "depression")
    assert classes[24] == ("humour", "humour")
    assert registry.domain("emotion").global_index("sad") == 13


def test_datasets_of_a_task_share_the_task_domain():
    for code, task in registry.get().tasks.items():
        for ds in registry.datasets_of_task(code):
            if task.kind == "cls":
                assert set(ds.labels) <= set(task.domain.labels), ds.name
            else:
                assert ds.labels == () and ds.is_free_text


def test_table7_totals():
    reg = registry.get()
    counted_by_source = {s.name for s in reg.sources.values() if s.paper_counts}
    total = sum(
        sum(d.paper_counts) for d in reg.datasets.values() if d.paper_counts and d.source not in counted_by_source
    )
    total += sum(sum(s.paper_counts) for s in reg.sources.values() if s.paper_counts)
    assert total == 101_964


@pytest.mark.parametrize(
    "surface,dataset,label",
    [
        ("joy", "meld_emotion", "happy"),
        ("Happiness", "tess", "happy"),
        ("ANGRY!", "cremad", "anger"),
        ("pleasant surprise", "tess", "surprise"),
        ("not sarcastic", "mmsd", "not sarcasm"),
        ("No sarcasm.", "mmsd", "not sarcasm"),
        ("yes", "mmsd", "sarcasm"),
        ("humor", "urfunny", "humour"),
        ("strongly positive", "mosei_senti", "highly positive"),
        ("without PTSD", "ptsd_in_the_wild", "no ptsd"),
    ],
)
def test_synonyms(surface, dataset, label):
    assert registry.canonical_label(surface, dataset) == label


def test_synonym_outside_the_dataset_label_set_is_not_a_label():
    assert registry.canonical_label("surprise", "cremad") is None  # CREMA-D has no surprise
    assert registry.canonical_label("neutral", "mosei_emotion") is None
    assert registry.canonical_label("positive", "chsimsv2") is None  # CH-SIMS v2 uses weakly/highly


def test_unknown_names_suggest_and_list():
    with pytest.raises(UnknownNameError) as info:
        registry.dataset("mustard")
    assert "Valid: " in str(info.value) and "mmsd" in str(info.value)
    with pytest.raises(UnknownNameError, match="Did you mean 'cremad'"):
        registry.dataset("cremd")


def test_sources_yield_their_datasets():
    assert registry.source("mosei").datasets == ("mosei_senti", "mosei_emotion")
    assert registry.source("mustard").datasets == ("mmsd",)
    assert set(registry.get().sources) == {d.source for d in registry.get().datasets.values()}
