"""Run afterward's benchmarks: ``python -m bench [name ...]``.

Every ``bench/bench_<name>.py`` module has a ``run() -> str`` returning its Markdown
tables; this runner prints them with the machine line, ready for docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from bench._table import machine


def main(argv: list[str]) -> int:
    available = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    wanted = argv or available
    unknown = [w for w in wanted if w not in available]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}")
        return 2
    print(f"Machine: {machine()}\n", flush=True)
    for name in wanted:
        module = importlib.import_module(f"bench.bench_{name}")
        print(module.run(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
