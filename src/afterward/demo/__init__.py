"""``afterward demo``: a sample shop that answers first and does the rest afterward.

``POST /checkout`` pays inline through ``afterward.http``, defers the inventory,
warehouse, analytics and CRM calls as one HTTP batch, and publishes
``order.completed`` to billing, notification and analytics groups on an embedded
SQLite bus; the dashboard is mounted at ``/afterward``. See ``docs/demo.md``.
``afterward demo`` (:mod:`afterward.cli`) serves it.
"""

from afterward.demo._load import fire, render_table
from afterward.demo._shop import Shop

__all__ = ["Shop", "fire", "render_table"]
