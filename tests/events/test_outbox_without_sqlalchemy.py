"""A Django project without SQLAlchemy installed: the outbox must not need it.

Run in a fresh interpreter where ``import sqlalchemy`` fails, as it does in a venv with
``afterward[django,events]`` only (most Django projects).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, os, sys

    class NoSQLAlchemy(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "sqlalchemy" or name.startswith("sqlalchemy."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoSQLAlchemy())
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django_project.settings"
    import django
    django.setup()
    from django.db import transaction
    from afterward import EventBus
    from afterward.integrations import django as afterward_django

    afterward_django.install()
    bus = EventBus(sys.argv[1])
    with transaction.atomic():
        bus.publish_sync("t", "committed")
        assert bus.event_count_sync("t") == 0, "published before the commit"
    import time
    deadline = time.monotonic() + 5
    while bus.event_count_sync("t") != 1:
        assert time.monotonic() < deadline, "the outbox row never reached the bus"
        time.sleep(0.01)
    assert "sqlalchemy" not in sys.modules
    print("ok")
    """
)


def test_django_outbox_needs_no_sqlalchemy(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"sqlite:///{tmp_path / 'bus.db'}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
