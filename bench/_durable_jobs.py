"""The hand-written webhook job ``python -m bench durable`` measures against
``request.dispatch()``: what a user writes without durable requests."""

from __future__ import annotations

from typing import Any

from afterward import http, job

__all__ = ["post_webhook"]


@job(tries=5, backoff=0)
async def post_webhook(url: str, body: dict[str, Any]) -> None:
    """POST ``body`` to ``url``; a status >= 400 raises, so the queue retries it."""
    (await http.post(url, json=body)).raise_for_status()
