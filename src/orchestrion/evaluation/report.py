"""Write an evaluation's results as JSON, a markdown table and a PNG chart.

One folder per protocol (``results/<protocol>/``): ``results.json`` (exactly what ``--json``
prints), ``results.md`` (models × metrics, best value in bold) and ``results.png`` (one bar group
per metric, so models compare at a glance).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["markdown_table", "write_report"]


def markdown_table(results: dict[str, dict[str, float]], metrics: list[str] | None = None) -> str:
    """Models as rows, metrics as columns, the best value of each column in bold.

    >>> print(markdown_table({"a": {"ndcg@10": 0.5}, "b": {"ndcg@10": 0.25}}))
    | model | ndcg@10 |
    |---|---|
    | a | **0.5000** |
    | b | 0.2500 |
    """
    metrics = metrics or [m for m in next(iter(results.values())) if m != "users"]
    best = {m: max(r.get(m, float("-inf")) for r in results.values()) for m in metrics}
    lines = ["| model | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for model, values in results.items():
        cells = []
        for m in metrics:
            value = values.get(m)
            text = "" if value is None else f"{value:.4f}"
            cells.append(f"**{text}**" if value is not None and value == best[m] else text)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _chart(results: dict[str, dict[str, float]], metrics: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(results)
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(metrics) + 2), 4.0), dpi=110)
    x = np.arange(len(metrics))
    for i, model in enumerate(models):
        ax.bar(x + i * width, [results[model].get(m, 0.0) for m in metrics], width, label=model)
    ax.set_xticks(x + width * (len(models) - 1) / 2, metrics)
    ax.set_ylabel("score (higher is better)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Write ``report`` (with a ``results`` mapping) under ``folder``; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, float]] = report["results"]
    metrics = [m for m in next(iter(results.values())) if m != "users"]
    paths = {"json": folder / "results.json", "markdown": folder / "results.md", "chart": folder / "results.png"}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    title = f"{report.get('protocol', '')} on {report.get('dataset', '')}"
    paths["markdown"].write_text(f"# {title}\n\n{markdown_table(results, metrics)}\n")
    _chart(results, metrics, title, paths["chart"])
    return paths
