"""hba-score reports as tables: markdown in the paper's Table-4 layout, CSV, LaTeX, and the models x tasks heatmap.

All read the JSON report built by :func:`hba_core.scoring.score`. Columns are the tasks in registry
order with their datasets as sub-columns; datasets with no samples in the truth are left out.
Per column the best value is bold and, with three or more models, the second best underlined.

>>> report = {"models": [{"name": "m", "datasets": {"mmsd": {"value": 0.5}}, "tasks": {"SAR": {"value": 0.5}}}]}
>>> print(to_markdown(report).splitlines()[0])
| Model | SAR |
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from hba_core import registry
from hba_core.errors import HbaError
from hba_core.jsonl import atomic_output


def columns(report: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(task code, its datasets scored in the report), in registry order, tasks without data left out."""
    scored = {name for m in report["models"] for name in m["datasets"]}
    out = []
    for code in registry.get().tasks:
        names = [d.name for d in registry.datasets_of_task(code) if d.name in scored]
        if names:
            out.append((code, names))
    return out


def fmt(value: float | None) -> str:
    """Three decimals without the leading zero, as in the paper (``.495``); ``–`` when undefined."""
    if value is None:
        return "–"
    text = f"{value:.3f}"
    return text[1:] if text.startswith("0.") else text


def ranks(values: list[float | None], higher_is_better: bool = True) -> list[int | None]:
    """Rank of each value among the distinct defined values (0 = best; ties share a rank)."""
    distinct = sorted({v for v in values if v is not None}, reverse=higher_is_better)
    return [None if v is None else distinct.index(v) for v in values]


def _marked(values: list[float | None], bold: tuple[str, str], underline: tuple[str, str]) -> list[str]:
    out = []
    for v, r in zip(values, ranks([None if v is None else round(v, 3) for v in values])):
        text = fmt(v)
        if r == 0 and len(values) > 1:
            text = f"{bold[0]}{text}{bold[1]}"
        elif r == 1 and len(values) > 2:
            text = f"{underline[0]}{text}{underline[1]}"
        out.append(text)
    return out


def _grid(report: dict[str, Any], bold: tuple[str, str], underline: tuple[str, str]) -> list[list[str]]:
    """Rows of marked cells: one per model, one column per dataset in :func:`columns` order."""
    models = report["models"]
    cols = [name for _, names in columns(report) for name in names]
    per_column = []
    for name in cols:
        values = [m["datasets"].get(name, {}).get("value") for m in models]
        per_column.append(_marked(values, bold, underline))
    return [[per_column[c][r] for c in range(len(cols))] for r in range(len(models))]


def _task_grid(report: dict[str, Any], bold: tuple[str, str], underline: tuple[str, str]) -> list[list[str]]:
    codes = [code for code, _ in columns(report)]
    per_column = [
        _marked([m["tasks"].get(c, {}).get("value") for m in report["models"]], bold, underline) for c in codes
    ]
    return [[per_column[c][r] for c in range(len(codes))] for r in range(len(report["models"]))]


def to_markdown(report: dict[str, Any]) -> str:
    """Table 4 (task columns, dataset sub-columns as the first row) and the task means (Figure 2's numbers)."""
    cols = columns(report)
    bold, underline = ("**", "**"), ("<u>", "</u>")
    header = ["Model"] + [code if i == 0 else "" for code, names in cols for i in range(len(names))]
    sub = [""] + [registry.dataset(n).title for _, names in cols for n in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), "| " + " | ".join(sub) + " |"]
    for model, cells in zip(report["models"], _grid(report, bold, underline)):
        lines.append("| " + " | ".join([model["name"], *cells]) + " |")
    codes = [code for code, _ in cols]
    lines += ["", "| Model | " + " | ".join(codes) + " |", "|" + "---|" * (len(codes) + 1)]
    for model, cells in zip(report["models"], _task_grid(report, bold, underline)):
        lines.append("| " + " | ".join([model["name"], *cells]) + " |")
    return "\n".join(lines) + "\n"


def to_delta(report: dict[str, Any]) -> str:
    """Two models side by side as in the paper's Table 6 (SFT vs BAM): per dataset and task, both scores,
    the relative change Δ% of the second over the first and the absolute change Δ."""
    if len(report["models"]) != 2:
        raise HbaError(f"--format delta compares exactly two models; got {len(report['models'])}")
    base, other = report["models"]
    lines = [f"| Task | Dataset | {base['name']} | {other['name']} | Δ% | Δ |", "|---|---|---|---|---|---|"]

    def row(task: str, dataset: str, a: float | None, b: float | None) -> str:
        absolute = None if a is None or b is None else b - a
        relative = "–" if absolute is None or not a else f"{100 * absolute / a:+.1f}%"
        delta = "–" if absolute is None else f"{absolute:+.3f}"
        return f"| {task} | {dataset} | {fmt(a)} | {fmt(b)} | {relative} | {delta} |"

    for code, names in columns(report):
        for name in names:
            lines.append(
                row(
                    code,
                    registry.dataset(name).title,
                    base["datasets"].get(name, {}).get("value"),
                    other["datasets"].get(name, {}).get("value"),
                )
            )
        if len(names) > 1:
            lines.append(
                row(code, "mean", base["tasks"].get(code, {}).get("value"), other["tasks"].get(code, {}).get("value"))
            )
    return "\n".join(lines) + "\n"


def to_intensity(report: dict[str, Any]) -> str:
    """Sentiment at each dataset's full intensity scale (paper Table 19: 7-class F1 and accuracy on
    CMU-MOSEI, the 5-class scale of CH-SIMS v2), one row per model; best per column in bold."""
    names = [
        d.name
        for d in registry.datasets_of_task("SEN")
        if any(d.name in m["datasets"] and len(d.labels) > 3 for m in report["models"])
    ]
    if not names:
        raise HbaError(
            "--format intensity needs a sentiment dataset with an intensity scale "
            "(mosei_senti or chsimsv2) in the truth"
        )
    cols: list[tuple[str, str]] = []
    header = ["Model"]
    for name in names:
        k = len(registry.dataset(name).labels)
        cols += [(name, f"f1w{k}"), (name, f"acc{k}")]
        header += [f"{registry.dataset(name).title} {k}-class F1", f"{registry.dataset(name).title} {k}-class Acc"]
    values = [[m["datasets"].get(n, {}).get("intensity", {}).get(key) for n, key in cols] for m in report["models"]]
    marked = [_marked([row[c] for row in values], ("**", "**"), ("<u>", "</u>")) for c in range(len(cols))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r, model in enumerate(report["models"]):
        lines.append("| " + " | ".join([model["name"], *(marked[c][r] for c in range(len(cols)))]) + " |")
    return "\n".join(lines) + "\n"


def to_csv(report: dict[str, Any]) -> str:
    """Long format: one row per model x dataset and per model x task (dataset empty), with intervals."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", "task", "dataset", "metric", "value", "n", "ci_low", "ci_high"])
    for m in report["models"]:
        for code, names in columns(report):
            for name in names:
                d = m["datasets"].get(name)
                if d is None:
                    continue
                ci = d.get("ci") or [None, None]
                writer.writerow([m["name"], code, name, d["metric"], d["value"], d["n"], *ci])
            t = m["tasks"][code]
            ci = t.get("ci") or [None, None]
            writer.writerow([m["name"], code, "", t["metric"], t["value"], "", *ci])
    return buf.getvalue()


def _tex(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("_", r"\_").replace("%", r"\%")


def to_latex(report: dict[str, Any]) -> str:
    """A ``tabular`` in the paper's layout: ``\\multicolumn`` task headers over dataset sub-headers."""
    cols = columns(report)
    n = sum(len(names) for _, names in cols)
    head = " & ".join(rf"\multicolumn{{{len(names)}}}{{c}}{{{code}}}" for code, names in cols)
    sub = " & ".join(_tex(registry.dataset(name).title) for _, names in cols for name in names)
    lines = [rf"\begin{{tabular}}{{l{'c' * n}}}", r"\toprule", rf"Model & {head} \\", rf" & {sub} \\", r"\midrule"]
    for model, cells in zip(report["models"], _grid(report, (r"\textbf{", "}"), (r"\underline{", "}"))):
        lines.append(" & ".join([_tex(model["name"]), *cells]).replace("–", "--") + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def plot_heatmap(report: dict[str, Any], path: str | Path) -> Path:
    """Models x tasks heatmap of the task means (Figure 2): per task, best dark green -> yellow -> worst dark red."""
    import matplotlib  # only needed for --plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    codes = [code for code, _ in columns(report)]
    names = [m["name"] for m in report["models"]]
    values = np.array(
        [
            [np.nan if m["tasks"][c]["value"] is None else m["tasks"][c]["value"] for c in codes]
            for m in report["models"]
        ],
        dtype=float,
    )
    shade = np.full_like(values, np.nan)
    for j in range(len(codes)):  # colour by rank within a task, as the figure compares models per task
        col = values[:, j]
        low, high = np.nanmin(col) if np.isfinite(col).any() else 0, np.nanmax(col) if np.isfinite(col).any() else 0
        shade[:, j] = 0.5 if high == low else (col - low) / (high - low)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(codes), 0.8 + 0.5 * len(names)))
    ax.imshow(np.ma.masked_invalid(shade), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(codes)), codes)
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(codes)):
            dark = not np.isnan(shade[i, j]) and abs(shade[i, j] - 0.5) > 0.3
            ax.text(
                j,
                i,
                fmt(None if np.isnan(values[i, j]) else float(values[i, j])),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    ax.set_title("Mean score per task")
    fig.tight_layout()
    with atomic_output(path) as stream:
        fig.savefig(stream, format="png", dpi=150)
    plt.close(fig)
    return Path(path)
