"""The Kafka and Redis backends are optional: `import afterward` never loads their
drivers, and a bus URL that needs a missing one says which extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = """
import sys
sys.modules["aiokafka"] = None   # as if the extras were not installed
sys.modules["redis"] = None
import afterward
from afterward.events import EventBus
for url, extra in (("kafka://127.0.0.1:9092", "kafka"), ("redis://127.0.0.1:6379/0", "redis")):
    try:
        EventBus(url)
    except ImportError as exc:
        assert f"pip install 'afterward[{extra}]'" in str(exc), exc
    else:
        raise AssertionError(url)
"""


def test_missing_drivers_name_the_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_import_afterward_loads_no_driver() -> None:
    code = (
        "import sys, afterward, afterward.events; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiokafka', 'redis')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stderr
