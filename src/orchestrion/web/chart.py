"""A small line chart as inline SVG, drawn on the server (no JavaScript, no image files).

>>> svg = line_chart(["d1", "d2"], {"up": [0.5, 0.25]}, title="Rates")
>>> svg.startswith("<svg") and "Rates" in svg and "polyline" in svg
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Final

__all__ = ["line_chart"]

# Colour-blind-safe pair with ≥ 4.5:1 contrast on white; the lines also differ by dash pattern.
_STYLES: Final = (("#0b5cad", ""), ("#a3222a", "6 4"), ("#1d6b35", "2 3"))


def line_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    width: int = 720,
    height: int = 260,
    percent: bool = True,
) -> str:
    """An accessible SVG line chart of ``series`` (values 0..1 when ``percent``) over ``labels``."""
    left, right, top, bottom = 48, 32, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = 1.0 if percent else max([1e-9, *(v for values in series.values() for v in values)])
    n = len(labels)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / top_value)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart-title"><title id="chart-title">{escape(title)}</title>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#c9d0da"/>',
    ]
    for step in range(5):
        v = top_value * step / 4
        label = f"{v:.0%}" if percent else f"{v:g}"
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e3e7ed"/>')
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{label}</text>')
    every = max(1, n // 8)
    for i, label in enumerate(labels):
        if i % every == 0 or i == n - 1:
            parts.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{escape(label)}</text>')
    for k, (name, values) in enumerate(series.items()):
        colour, dash = _STYLES[k % len(_STYLES)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2.5"{dashed} points="{points}"/>')
        for i, v in enumerate(values):
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        lx = left + 10 + 170 * k
        parts.append(f'<line x1="{lx}" x2="{lx + 24}" y1="{height - 10}" y2="{height - 10}" stroke="{colour}" '
                     f'stroke-width="2.5"{dashed}/>')
        parts.append(f'<text x="{lx + 30}" y="{height - 6}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
