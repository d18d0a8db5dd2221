"""hba-score reports as tables: markdown in the paper's Table-4 layout, CSV, LaTeX, and the models x tasks heatmap.

All read the JSON report built by :func:`hba_core.scoring.score`. Columns are the tasks in registry
order with their datasets as sub-columns; datasets with no samples in the truth are left out.
Per column the best value is bold and, with three or more models, the second best underlined.

>>> report = {"models": [{"name": "m", "datasets": {"mmsd": {"value": 0.5}}, "tasks": {"SAR": {"value": 0.5}}}]}
>>> print(to_markdown(report).splitlines()[0])
| Model | SAR · MUStARD |
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


def _floor(entry: dict[str, Any]) -> bool:
    """A dataset score where nothing was answered: the value is the metric's floor (EMO .500), not a score."""
    return entry.get("answered") == 0 and entry.get("value") is not None and bool(entry.get("samples"))


def _plus_minus(entry: dict[str, Any]) -> str:
    ci = entry.get("ci")
    return "" if not ci else f" ± {fmt((ci[1] - ci[0]) / 2)}"


def _empty(entry: dict[str, Any], free_text: bool) -> str:
    """Why a cell has no value: the model has no samples there, a free-text task was not judged, or undefined."""
    if not entry:
        return "– (no samples)"
    if free_text and "answered" not in entry:
        return "– (not judged)"
    return "–"


def _marked(
    entries: list[dict[str, Any]],
    bold: tuple[str, str],
    underline: tuple[str, str],
    intervals: bool = False,
    counts: bool = False,
    free_text: bool = False,
) -> list[str]:
    """Cells of one column: best bold, 2nd underlined (3+ models); ``±`` half-width of the interval when asked;
    a floor shown as ``– (0/N answered)`` and left out of the ranking. ``counts``: each value followed by
    ``(answered/samples)`` and each empty cell by why it is empty (see :func:`_empty`)."""
    values = [None if _floor(e) else e.get("value") for e in entries]
    out = []
    for e, v, r in zip(entries, values, ranks([None if v is None else round(v, 3) for v in values])):
        if _floor(e):
            out.append(f"– (0/{e['samples']} answered)")
            continue
        if v is None and counts:
            out.append(_empty(e, free_text))
            continue
        text = fmt(v)
        if r == 0 and len(values) > 1:
            text = f"{bold[0]}{text}{bold[1]}"
        elif r == 1 and len(values) > 2:
            text = f"{underline[0]}{text}{underline[1]}"
        text += _plus_minus(e) if intervals and v is not None else ""
        if counts and v is not None and e.get("samples") and "answered" in e:
            text += f" ({e['answered']}/{e['samples']})"
        out.append(text)
    return out


def _grid(
    report: dict[str, Any],
    bold: tuple[str, str],
    underline: tuple[str, str],
    intervals: bool = False,
    counts: bool = False,
    by: str = "datasets",
) -> list[list[str]]:
    """Rows of marked cells: one per model, one column per dataset (``by="datasets"``) or per task
    (``by="tasks"``), in :func:`columns` order."""
    if by == "datasets":
        keys = [name for _, names in columns(report) for name in names]
        free_text = [registry.dataset(n).is_free_text for n in keys]
    else:
        keys = [code for code, _ in columns(report)]
        free_text = [registry.get().tasks[c].is_free_text for c in keys]
    models = report["models"]
    per_column = [
        _marked([m[by].get(k, {}) for m in models], bold, underline, intervals, counts, text)
        for k, text in zip(keys, free_text)
    ]
    return [[per_column[c][r] for c in range(len(keys))] for r in range(len(models))]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _legend(report: dict[str, Any]) -> list[str]:
    """What a reader needs to read the tables: the metric of each task, the cell format, what each "–" means."""
    by_metric: dict[str, list[str]] = {}
    tasks = registry.get().tasks
    for code, _ in columns(report):
        by_metric.setdefault(tasks[code].metric.name, []).append(code)
    lines = ["", "Legend:"]
    for metric, codes in by_metric.items():
        m = tasks[codes[0]].metric
        lines.append(f"- {', '.join(codes)}: {metric.replace('_', ' ')}. {m.description}")
    lines += [
        "- A cell is `score (answered/samples)`: answered = predictions that named a label the metric counts"
        " (free-text tasks: samples judged TRUE or FALSE). Best per column in bold, second underlined.",
        "- `– (not judged)`: a free-text task without hba-judge judgments (pass --judgments);"
        " `– (no samples)`: the model has no score there; `– (0/N answered)`: nothing was answered,"
        " so the metric's floor is not shown as a score; `–` alone: the metric is undefined.",
    ]
    return lines


def to_markdown(report: dict[str, Any], notes: tuple[str, ...] | list[str] = ()) -> str:
    """Per-dataset table (task and dataset in each column header), the task means (Figure 2's numbers), a legend.

    ``notes`` are shown first as quoted lines (e.g. that the models are tiny random fixtures); every
    table's header row is followed directly by its ``| --- |`` separator, so it renders as a header.
    """
    cols = columns(report)
    bold, underline = ("**", "**"), ("<u>", "</u>")
    intervals = bool(report.get("bootstrap"))
    lines = [line for note in notes for line in (f"> **Note:** {note}", "")]
    header = ["Model"] + [
        f"{code} · {registry.dataset(n).title.removesuffix(f' ({code})')}" for code, names in cols for n in names
    ]
    lines += [_row(header), _row(["---"] * len(header))]
    for model, cells in zip(report["models"], _grid(report, bold, underline, intervals, counts=True)):
        lines.append(_row([model["name"], *cells]))
    codes = [code for code, _ in cols]
    lines += ["", "Mean per task:", "", _row(["Model", *codes]), _row(["---"] * (len(codes) + 1))]
    for model, cells in zip(report["models"], _grid(report, bold, underline, intervals, counts=True, by="tasks")):
        lines.append(_row([model["name"], *cells]))
    if intervals:
        b = report["bootstrap"]
        lines += ["", f"± half-width of the {b['confidence']:.0%} bootstrap interval ({b['replicates']} replicates)."]
    lines += _legend(report)
    lines += _comparisons_markdown(report)
    return "\n".join(lines) + "\n"


def _comparisons_markdown(report: dict[str, Any]) -> list[str]:
    """The paired tests, one table per comparison: Δ = A − B, its 95% interval and the two-sided p-value."""
    lines: list[str] = []
    for comp in report.get("comparisons") or []:
        lines += [
            "",
            f"Paired bootstrap, {comp['a']} − {comp['b']} ({comp['replicates']} replicates, same resampled samples):",
            "",
            "| Task | Dataset | Δ | 95% CI | p |",
            "|---|---|---|---|---|",
        ]

        def row(task: str, dataset: str, d: dict[str, Any]) -> str:
            delta = "–" if d.get("delta") is None else f"{d['delta']:+.3f}"
            ci = d.get("ci")
            interval = "–" if not ci else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"
            p = "–" if d.get("p_value") is None else f"{d['p_value']:.3f}"
            return f"| {task} | {dataset} | {delta} | {interval} | {p} |"

        for code, names in columns(report):
            for name in names:
                if name in comp["datasets"]:
                    lines.append(row(code, registry.dataset(name).title, comp["datasets"][name]))
            if code in comp["tasks"] and len(names) > 1:
                lines.append(row(code, "mean", comp["tasks"][code]))
    return lines


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
    marked = [_marked([{"value": row[c]} for row in values], ("**", "**"), ("<u>", "</u>")) for c in range(len(cols))]
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


def plot_heatmap(report: dict[str, Any], path: str | Path, notes: tuple[str, ...] | list[str] = ()) -> Path:
    """Draw :func:`heatmap_figure` to a PNG (written atomically); returns the path."""
    fig = heatmap_figure(report, notes)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    with atomic_output(path) as stream:
        fig.savefig(stream, format="png", dpi=150)
    plt.close(fig)
    return Path(path)


def heatmap_figure(report: dict[str, Any], notes: tuple[str, ...] | list[str] = ()) -> Any:
    """Models x tasks heatmap of the task means (Figure 2) on an absolute 0-1 colour scale with a colour bar.

    Colour is the score itself (so one model alone still reads), never a rank within the task; a cell
    without a score (not judged, no samples, nothing answered) is a grey hatched patch, never a colour of
    the scale. ``notes`` go under the title (e.g. that the models are tiny random fixtures).
    """
    import matplotlib  # only needed for --plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    codes = [code for code, _ in columns(report)]
    names = [m["name"] for m in report["models"]]
    entries = [[m["tasks"].get(c, {}) for c in codes] for m in report["models"]]
    values = np.array(
        [[np.nan if _floor(e) or e.get("value") is None else e["value"] for e in row] for row in entries], dtype=float
    )
    fig, ax = plt.subplots(figsize=(3.0 + 0.9 * len(codes), 1.8 + 0.5 * len(names) + 0.2 * len(notes)))
    cmap = plt.get_cmap("viridis").with_extremes(bad=(0, 0, 0, 0))  # missing: transparent, the patch shows
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label("score (0-1)")
    ax.set_xticks(range(len(codes)), codes)
    ax.set_yticks(range(len(names)), names)
    tasks = registry.get().tasks
    for i in range(len(names)):
        for j in range(len(codes)):
            v = values[i, j]
            if np.isnan(v):
                ax.add_patch(
                    Rectangle(
                        (j - 0.5, i - 0.5), 1, 1, facecolor="0.88", edgecolor="0.6", hatch="///", lw=0, gid="missing"
                    )
                )
                label = _empty(entries[i][j], tasks[codes[j]].is_free_text).removeprefix("– ").strip("()")
                text, color = label or "undefined", "0.25"
                if _floor(entries[i][j]):
                    text = f"0/{entries[i][j]['samples']}\nanswered"
            else:
                text, color = fmt(float(v)), "white" if v < 0.55 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    title = "Mean score per task\ncolour: the score on an absolute 0-1 scale; grey hatched: no score"
    ax.set_title("\n".join([title, *notes]), fontsize=9)
    fig.tight_layout()
    return fig
