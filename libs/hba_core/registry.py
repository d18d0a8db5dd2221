"""The Atlas registry: datasets, tasks, label domains, synonyms and metrics, read from registry.toml.

Everything that names a dataset, a label or a metric looks it up here, so the facts live in one
file. Unknown names fail with the valid ones listed and a "did you mean".

>>> from hba_core import registry
>>> registry.dataset("cremad").task.code
'EMO'
>>> registry.canonical_label("joy", "meld_emotion")
'happy'
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from hba_core.errors import HbaError, UnknownNameError

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Domain:
    """A label domain: one classifier label space shared by the datasets of one task."""

    name: str
    labels: tuple[str, ...]
    first_index: int  # global index of labels[0] in the 25-class unified space

    def global_index(self, label: str) -> int:
        return self.first_index + self.labels.index(label)


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    higher_is_better: bool


@dataclass(frozen=True)
class Task:
    code: str
    title: str
    kind: str  # "cls" (discrete labels) or "qa" (free text, judged)
    metric: Metric
    domain: Domain | None

    @property
    def is_free_text(self) -> bool:
        return self.kind == "qa"


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    source: str
    task: Task
    release_task: str
    dimensions: tuple[str, ...]
    modalities: tuple[str, ...]
    labels: tuple[str, ...]
    paper_counts: tuple[int, int, int] | None = None
    _label_lookup: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_free_text(self) -> bool:
        return self.task.is_free_text


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    datasets: tuple[str, ...]
    paper_counts: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Registry:
    domains: dict[str, Domain]
    metrics: dict[str, Metric]
    tasks: dict[str, Task]
    datasets: dict[str, Dataset]
    sources: dict[str, Source]
    synonyms: dict[str, dict[str, str]]
    boolean_answers: dict[str, tuple[str, ...]]
    sets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    rl: dict[str, Any] = field(default_factory=dict)


def _lookup(kind: str, name: str, table: dict[str, Any]) -> Any:
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError(kind, name, list(table)) from None


_SPACES = re.compile(r"\s+")
_EDGE_PUNCT = " \t\n\r.,;:!?\"'`()[]{}*_"


def normalize_text(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation: the form synonyms are keyed by.

    >>> normalize_text("  **Happy!** ")
    'happy'
    """
    return _SPACES.sub(" ", text.strip().lower()).strip(_EDGE_PUNCT).strip()


def _label_lookup(
    labels: tuple[str, ...],
    domain: Domain | None,
    reg_synonyms: dict[str, dict[str, str]],
    booleans: dict[str, tuple[str, ...]],
) -> dict[str, str]:
    """Surface form -> canonical label, restricted to one dataset's label set."""
    lookup = {label: label for label in labels}
    if domain is None:
        return lookup
    for surface, canonical in reg_synonyms.get(domain.name, {}).items():
        if canonical in labels:
            lookup.setdefault(surface, canonical)
    if len(domain.labels) == 2:  # binary detection: yes/no name the positive/negative class
        negative, positive = domain.labels
        for word in booleans["positive"]:
            if positive in labels:
                lookup.setdefault(word, positive)
        for word in booleans["negative"]:
            if negative in labels:
                lookup.setdefault(word, negative)
    return lookup


def _build(raw: dict[str, Any]) -> Registry:
    domains: dict[str, Domain] = {}
    index = 0
    for entry in raw["domains"]:
        domains[entry["name"]] = Domain(entry["name"], tuple(entry["labels"]), index)
        index += len(entry["labels"])
    metrics = {name: Metric(name, m["description"], m["higher_is_better"]) for name, m in raw["metrics"].items()}
    tasks = {
        code: Task(code, t["title"], t["kind"], metrics[t["metric"]], domains[t["domain"]] if "domain" in t else None)
        for code, t in raw["tasks"].items()
    }
    synonyms = {d: {normalize_text(k): v for k, v in table.items()} for d, table in raw["synonyms"].items()}
    booleans = {k: tuple(v) for k, v in raw["boolean_answers"].items()}
    datasets: dict[str, Dataset] = {}
    for d in raw["datasets"]:
        task = tasks[d["task"]]
        labels = tuple(d["labels"])
        if task.domain is not None:
            unknown = set(labels) - set(task.domain.labels)
            assert not unknown, f"registry: {d['name']} labels {unknown} not in domain {task.domain.name}"
        counts = d.get("paper_counts")
        datasets[d["name"]] = Dataset(
            name=d["name"],
            title=d["title"],
            source=d["source"],
            task=task,
            release_task=d["release_task"],
            dimensions=tuple(d["dimensions"]),
            modalities=tuple(d["modalities"]),
            labels=labels,
            paper_counts=tuple(counts) if counts else None,
            _label_lookup=_label_lookup(labels, task.domain, synonyms, booleans),
        )
    sources = {}
    for name, s in raw["sources"].items():
        members = tuple(d for d in datasets.values() if d.source == name)
        counts = s.get("paper_counts")
        sources[name] = Source(name, s["title"], tuple(d.name for d in members), tuple(counts) if counts else None)
    sets = {name: tuple(members) for name, members in raw.get("sets", {}).items()}
    for name, members in sets.items():
        unknown = set(members) - set(datasets)
        assert not unknown, f"registry: set {name} names unknown datasets {unknown}"
    return Registry(
        domains, metrics, tasks, datasets, sources, synonyms, booleans, sets, raw.get("training", {}), raw.get("rl", {})
    )


@cache
def get() -> Registry:
    """The registry, parsed once per process."""
    text = resources.files("hba_core").joinpath("registry.toml").read_text(encoding="utf-8")
    return _build(tomllib.loads(text))


def dataset(name: str) -> Dataset:
    """Look up a dataset by its official name (e.g. ``mmsd``); unknown names list the valid ones."""
    return _lookup("dataset", name, get().datasets)


def task(code: str) -> Task:
    return _lookup("task", code.upper(), get().tasks)


def source(name: str) -> Source:
    return _lookup("source", name, get().sources)


def domain(name: str) -> Domain:
    return _lookup("label domain", name, get().domains)


def metric(name: str) -> Metric:
    return _lookup("metric", name, get().metrics)


def dataset_names() -> list[str]:
    return list(get().datasets)


def datasets_of_task(code: str) -> list[Dataset]:
    """Datasets of one task, in registry order (the order of the paper's tables)."""
    t = task(code)
    return [d for d in get().datasets.values() if d.task is t]


def global_classes() -> list[tuple[str, str]]:
    """The unified label space: (domain, label) for each of the 25 global classes, by index."""
    return [(d.name, label) for d in get().domains.values() for label in d.labels]


def canonical_label(text: str, dataset_name: str) -> str | None:
    """Map a surface form to the dataset's canonical label (case, punctuation, synonyms); None if none.

    Only exact matches after normalisation: finding a label inside prose is answer extraction,
    which lives with the scorer.

    >>> canonical_label("Not Sarcastic.", "mmsd")
    'not sarcasm'
    >>> canonical_label("purple", "mmsd") is None
    True
    """
    return dataset(dataset_name)._label_lookup.get(normalize_text(text))


def label_surface_forms(dataset_name: str) -> dict[str, str]:
    """Every surface form (normalised) that names one of the dataset's labels, with its label."""
    return dict(dataset(dataset_name)._label_lookup)


def dataset_set(name: str) -> list[str]:
    """A named set of datasets an experiment uses (``held_out``, ``bam``, ``bam_mini``, ``intensity``).

    >>> dataset_set("held_out")
    ['mosei_senti', 'meld_emotion', 'daicwoz', 'mmsd']
    """
    return list(_lookup("dataset set", name, get().sets))


def batch_size(dataset_name: str) -> int:
    """App. C.2's effective batch size for a per-dataset run on ``dataset_name``.

    >>> batch_size("daicwoz"), batch_size("cremad")
    (4, 32)
    """
    training = get().training
    return int(training.get("batch_size_of", {}).get(dataset(dataset_name).name, training["batch_size"]))


def transfer_epochs(dataset_name: str) -> int:
    """§4.2's fine-tuning epochs on a held-out dataset (2 for DAIC-WOZ, else 1)."""
    training = get().training
    return int(training.get("transfer_epochs_of", {}).get(dataset(dataset_name).name, training["transfer_epochs"]))


def estimators() -> list[str]:
    """The advantage estimators hba-grpo offers (``--estimator``)."""
    return list(get().rl["estimators"])


_GETTERS = {"batch_size": batch_size, "transfer_epochs": transfer_epochs}


def get_fact(name: str, dataset_name: str | None = None) -> str:
    """One registry fact as text for shell recipes: a set or list comma-joined, a per-dataset number.

    >>> get_fact("held_out")
    'mosei_senti,meld_emotion,daicwoz,mmsd'
    >>> get_fact("batch_size", "mmsd")
    '16'
    """
    if name in _GETTERS:
        if dataset_name is None:
            raise HbaError(f"{name} is a per-dataset fact: give the dataset too (get {name} DATASET)")
        return str(_GETTERS[name](dataset_name))
    if name == "datasets":
        return ",".join(dataset_names())
    if name in get().rl:  # estimators, rewards: lists of names
        return ",".join(get().rl[name])
    valid = [*_GETTERS, "datasets", *get().rl, *get().sets]
    if name not in get().sets:
        raise UnknownNameError("registry fact", name, valid)
    return ",".join(dataset_set(name))


def _main(argv: list[str]) -> int:
    """``python -m hba_core.registry get NAME [DATASET]``: one fact on stdout (for recipes)."""
    import sys

    if len(argv) not in (2, 3) or argv[0] != "get":
        print(
            "usage: python -m hba_core.registry get NAME [DATASET]  (e.g. get held_out; get batch_size mmsd)",
            file=sys.stderr,
        )
        return 2
    try:
        print(get_fact(argv[1], argv[2] if len(argv) == 3 else None))
    except HbaError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
