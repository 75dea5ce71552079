"""Printing benchmark results as a Markdown table (pasted into docs/benchmarks.md)."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Sequence

__all__ = ["Row", "machine", "median_ms", "percentile_ms", "table"]

Row = Sequence[object]


def median_ms(samples: Sequence[float]) -> float:
    """Median of samples given in seconds, in milliseconds."""
    return statistics.median(samples) * 1000


def percentile_ms(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0.5, 0.99...) of samples given in seconds, in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def machine() -> str:
    """One line describing the machine and the date, for the results page."""
    import os

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )


def table(title: str, header: Sequence[str], rows: Sequence[Row]) -> str:
    """Render ``rows`` under ``header`` as a Markdown table headed by ``title``."""
    cells = [[str(c) for c in header], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"### {title}", ""]
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)
