"""A tiny inline SVG line chart: no JavaScript, no library, safe under a strict CSP."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["COLORS", "PALETTE", "line_chart"]

COLORS = {"published": "#2563eb", "handled": "#16a34a", "failed": "#dc2626"}
PALETTE = ("#7c3aed", "#0891b2", "#ea580c", "#4d7c0f", "#be185d", "#475569")


def _legend(names: Sequence[str], width: int, pad: int) -> list[tuple[str, float, int]]:
    """(name, x, row) per series: left to right, wrapping at ``width``."""
    placed, x, row = [], float(pad), 0
    for name in names:
        size = len(name) * 6.5 + 24
        if x + size > width and x > pad:
            x, row = float(pad), row + 1
        placed.append((name, x, row))
        x += size
    return placed


def line_chart(
    series: dict[str, Sequence[float]], *, width: int = 640, height: int = 120, label: str = ""
) -> str:
    """An ``<svg>`` with one polyline per series (all the same length), y from zero,
    and a legend under it. Names are escaped and numbers formatted: safe HTML."""
    points = max((len(v) for v in series.values()), default=0)
    top = max((max(v) for v in series.values() if v), default=0) or 1
    pad = 24
    legend = _legend(list(series), width, pad)
    total = height + 16 * (1 + max((row for *_, row in legend), default=0))
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {total}" width="{width}" height="{total}" '
        f'role="img" aria-label="{escape(label)}">',
        f'<line x1="{pad}" y1="{height}" x2="{width}" y2="{height}" stroke="#ccc"/>',
        f'<text x="2" y="12" font-size="10" fill="#666">{top:g}</text>',
        f'<text x="2" y="{height}" font-size="10" fill="#666">0</text>',
    ]
    step = (width - pad) / max(points - 1, 1)
    colors = {
        name: COLORS.get(name, PALETTE[index % len(PALETTE)]) for index, name in enumerate(series)
    }
    for name, values in series.items():
        coords = " ".join(
            f"{pad + i * step:.1f},{height - (v / top) * (height - pad):.1f}"
            for i, v in enumerate(values)
        )
        if coords:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colors[name]}" '
                'stroke-width="2"/>'
            )
    for name, x, row in legend:
        parts.append(
            f'<text x="{x:.0f}" y="{height + 14 + 16 * row}" font-size="11" '
            f'fill="{colors[name]}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
