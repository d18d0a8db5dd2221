"""Statistics of sample files: the paper's Table 7 (dataset x split counts), label distributions, modalities.

Rows follow Table 7's order (the registry's sources, each source's datasets in registry order); a
source whose datasets share their records (MMPsy: one
interview gives a depression and an anxiety sample) is one row counted once, as Table 7 does. Each
row carries the paper's counts for comparison.

>>> t = table7([{"dataset": "mmsd", "split": "train", "class_label": "sarcasm", "modality_signature": "text_video"}])
>>> t["rows"][0]["name"], t["rows"][0]["train"], t["rows"][0]["paper"]
('MUStARD', 1, [483, 104, 103])
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import orjson

from hba_core import registry

SPLITS = registry.SPLITS


def _count(rows: Iterable[dict[str, Any]]) -> tuple[Counter, dict[str, Counter], dict[str, Counter]]:
    splits: Counter = Counter()
    labels: dict[str, Counter] = defaultdict(Counter)
    signatures: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        name = row.get("dataset", "?")
        splits[(name, row.get("split") or "?")] += 1
        ds = registry.get().datasets.get(name)
        if row.get("class_label") is not None and ds is not None and not ds.is_free_text:
            labels[name][row["class_label"]] += 1
        signatures[name][row.get("modality_signature") or "?"] += 1
    return splits, labels, signatures


def table7(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts per dataset and split (Table 7 layout), label distributions and modality signatures."""
    splits, labels, signatures = _count(rows)
    reg = registry.get()
    out_rows: list[dict[str, Any]] = []
    seen_sources: set[str] = set()
    in_table_order = [reg.datasets[name] for source in reg.sources.values() for name in source.datasets]
    for ds in in_table_order:  # Table 7 lists sources in the registry's [sources] order
        source = reg.sources[ds.source]
        if source.paper_counts is not None:  # datasets sharing records: one row per source
            if ds.source in seen_sources:
                continue
            seen_sources.add(ds.source)
            counts = {s: max(splits.get((m, s), 0) for m in source.datasets) for s in SPLITS}
            name, paper = source.title, list(source.paper_counts)
        else:
            counts = {s: splits.get((ds.name, s), 0) for s in SPLITS}
            name, paper = ds.title, list(ds.paper_counts) if ds.paper_counts else None
        total = sum(counts.values())
        if total == 0:
            continue
        out_rows.append({"name": name, **counts, "total": total, "paper": paper})
    known = set(reg.datasets)
    unknown = {k: n for k, n in splits.items() if k[0] not in known or k[1] not in SPLITS}
    totals = {s: sum(r[s] for r in out_rows) for s in SPLITS}
    return {
        "rows": out_rows,
        "combined": {**totals, "total": sum(totals.values())},
        "other": [{"dataset": d, "split": s, "count": n} for (d, s), n in sorted(unknown.items())],
        "labels": {d: dict(c.most_common()) for d, c in labels.items()},
        "modalities": {d: dict(c.most_common()) for d, c in signatures.items()},
    }


def render(stats: dict[str, Any], fmt: str) -> str:
    """The statistics as ``md`` (tables), ``json`` or ``csv`` (the Table 7 rows only)."""
    if fmt == "json":
        return orjson.dumps(stats, option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["dataset", "train", "val", "test", "total", "paper_train", "paper_val", "paper_test"])
        for r in stats["rows"]:
            writer.writerow([r["name"], r["train"], r["val"], r["test"], r["total"], *(r["paper"] or ["", "", ""])])
        c = stats["combined"]
        writer.writerow(["Combined Total", c["train"], c["val"], c["test"], c["total"], "", "", ""])
        return buf.getvalue()
    if fmt != "md":
        raise ValueError(f"unknown format {fmt!r}")
    lines = ["| Dataset | Train | Val | Test | Total | Paper (train/val/test) |", "|---|---:|---:|---:|---:|---|"]
    for r in stats["rows"]:
        paper = "/".join(map(str, r["paper"])) if r["paper"] else "-"
        lines.append(f"| {r['name']} | {r['train']} | {r['val']} | {r['test']} | {r['total']} | {paper} |")
    c = stats["combined"]
    lines.append(f"| **Combined Total** | **{c['train']}** | **{c['val']}** | **{c['test']}** | **{c['total']}** | |")
    for other in stats["other"]:
        lines.append(f"\nNot in the table: {other['count']} samples of {other['dataset']!r} split {other['split']!r}")
    lines += ["", "Label distributions:", "", "| Dataset | Labels |", "|---|---|"]
    lines += [f"| {d} | {', '.join(f'{k} {n}' for k, n in c.items())} |" for d, c in stats["labels"].items()]
    lines += ["", "Modality signatures:", "", "| Dataset | Signatures |", "|---|---|"]
    lines += [f"| {d} | {', '.join(f'{k} {n}' for k, n in c.items())} |" for d, c in stats["modalities"].items()]
    return "\n".join(lines) + "\n"
