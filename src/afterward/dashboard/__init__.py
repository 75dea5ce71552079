"""The afterward dashboard: a Starlette app over an event bus, mountable at any path.

Pages: overview (throughput, lag), dead letters and failed jobs (retry, discard),
a correlation ID's flow as a timeline, and deferred-work counters. Every page and
action needs the access token; actions are CSRF-checked POSTs. See ``docs/dashboard.md``.

Example:
    >>> from afterward.dashboard import create_app
    >>> dashboard = create_app(bus)                  # a random token: dashboard.token
    >>> app.mount("/afterward", dashboard)           # FastAPI / Starlette

Needs ``pip install 'afterward[dashboard]'`` (Starlette, Jinja2, uvicorn).
"""

from afterward.dashboard._app import Dashboard, create_app
from afterward.dashboard._recorder import Recorder, Step, default_recorder

__all__ = ["Dashboard", "Recorder", "Step", "create_app", "default_recorder"]
