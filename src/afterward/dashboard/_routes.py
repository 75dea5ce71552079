"""The dashboard's pages (GET) and actions (POST, CSRF-checked)."""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from afterward._exceptions import NotFoundError
from afterward._stats import stats
from afterward.dashboard._chart import line_chart
from afterward.dashboard._flow import build_flow
from afterward.events import has_failed_jobs, maybe_await, read_dead_letters, read_failed_jobs

__all__ = ["exception_handlers", "routes"]

_ASSETS = Path(__file__).parent / "assets"
# Shown even at zero: "0 failed" is information too.
_DEFER_COUNTERS = (
    "defer.registered",
    "defer.completed",
    "defer.failed",
    "defer.skipped",
    "defer.rolled_back",
    "defer.lost",
    "hooks.failed",
)


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    state = request.app.state
    partial = request.headers.get("x-afterward-partial") == "1"
    html = state.templates.get_template(template).render(
        request=request,
        base=_base(request),
        csrf=request.state.csrf,
        title=state.title,
        refresh=int(state.refresh * 1000),
        partial=partial,
        done=request.query_params.get("done"),
        **context,
    )
    return HTMLResponse(html, status_code=status)


async def _check_csrf(request: Request) -> dict[str, str]:
    """The action's form, once its CSRF token (or bearer header) is checked.

    The action, from the path or the bulk form's ``action`` field, must be ``retry`` or
    ``discard``: a bulk form without one must not default to discarding everything.
    """
    # Our forms are small and urlencoded: parse them here rather than depend on
    # python-multipart; anything large or of another type is refused.
    body = await request.body()
    if len(body) > 65_536:
        raise _Refused()
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if request.path_params.get("action", form.get("action")) not in ("retry", "discard"):
        raise _Refused()
    if request.state.csrf_exempt:
        return form
    given = form.get("csrf") or request.headers.get("x-csrf-token") or ""
    if not hmac.compare_digest(given.encode(), str(request.state.csrf).encode()):
        raise _Refused()
    return form


class _Refused(Exception):
    pass


def _back(request: Request, path: str, message: str, **query: str | None) -> RedirectResponse:
    params = {k: v for k, v in query.items() if v} | {"done": message}
    return RedirectResponse(f"{_base(request)}{path}?{urlencode(params)}", status_code=303)


async def overview(request: Request) -> HTMLResponse:
    """``GET /``: counters, the throughput and lag charts, lag per group and topic."""
    state = request.app.state
    sample = await state.sampler.sample()
    chart = line_chart(
        {kind: state.sampler.series(kind) for kind in ("published", "handled", "failed")},
        label="events per interval",
    )
    lag_chart = line_chart(state.sampler.lag_series(), label="lag per group and topic")
    lag_rows = [
        {"group": g, "topic": t, "lag": n, "over": n >= state.lag_threshold}
        for g, topics in sorted(sample.lag.items())
        for t, n in sorted(topics.items())
    ]
    letters = await read_dead_letters(state.bus)
    jobs = await read_failed_jobs(state.bus)
    return _render(
        request,
        "overview.html",
        chart=chart,
        lag_chart=lag_chart,
        rows=state.sampler.rows(),
        lag_rows=lag_rows,
        threshold=state.lag_threshold,
        dead_letters=len(letters),
        failed_jobs=len(jobs),
        deferred={k: v for k, v in stats().items() if k.startswith("defer.")},
        samples=len(state.sampler.samples),
        interval=state.sampler.interval,
    )


async def dead_letters(request: Request) -> HTMLResponse:
    """``GET /dead-letters``: the list, filtered by ``group``, ``topic`` and ``q``."""
    q = request.query_params
    group, topic, text = q.get("group") or None, q.get("topic") or None, q.get("q") or None
    bus = request.app.state.bus
    every = await read_dead_letters(bus)
    letters = await read_dead_letters(bus, group, topic, text)
    return _render(
        request,
        "dead_letters.html",
        letters=letters,
        groups=sorted({d.group for d in every}),
        topics=sorted({d.event.topic for d in every}),
        group=group,
        topic=topic,
        q=text,
    )


async def _find_letter(request: Request) -> Any:
    wanted = request.path_params["id"]
    for letter in await read_dead_letters(request.app.state.bus):
        if str(letter.id) == wanted:
            return letter
    return None


async def dead_letter(request: Request) -> HTMLResponse:
    """``GET /dead-letters/{id}``: one letter with its payload and traceback."""
    letter = await _find_letter(request)
    if letter is None:
        return _render(request, "missing.html", status=404, what="dead letter")
    import json

    payload = json.dumps(letter.event.data, indent=2, ensure_ascii=False, default=str)
    return _render(request, "dead_letter.html", letter=letter, payload=payload)


async def dead_letter_action(request: Request) -> Response:
    """``POST /dead-letters/{id}/{retry|discard}``, then back to the list."""
    await _check_csrf(request)
    bus, wanted, action = (
        request.app.state.bus,
        request.path_params["id"],
        request.path_params["action"],
    )
    if action == "retry":
        handled = await bus.retry_dead_letter(wanted)
        message = "retried: handled" if handled else "retried: failed again, still a dead letter"
    else:
        await bus.discard_dead_letter(wanted)
        message = "discarded"
    return _back(request, "/dead-letters", f"{wanted}: {message}")


async def dead_letters_bulk(request: Request) -> Response:
    """``POST /dead-letters/bulk``: retry or discard every letter the filter matches."""
    form = await _check_csrf(request)
    bus = request.app.state.bus
    group, topic, text = form.get("group") or None, form.get("topic") or None, form.get("q") or None
    letters = await read_dead_letters(bus, group, topic, text)
    retry = form.get("action") == "retry"
    for letter in letters:
        await (bus.retry_dead_letter if retry else bus.discard_dead_letter)(letter.id)
    left = len(await read_dead_letters(bus, group, topic, text))
    verb = "retried" if retry else "discarded"
    message = f"{verb} {len(letters)} dead letter(s); {left} left"
    return _back(request, "/dead-letters", message, group=group, topic=topic, q=text)


async def queues(request: Request) -> HTMLResponse:
    """``GET /queues``: ready, delayed, running (by worker) and failed jobs per queue."""
    bus = request.app.state.bus
    reader = getattr(bus, "queue_stats", None)
    depths = await maybe_await(reader()) if callable(reader) else {}
    return _render(
        request, "queues.html", supported=callable(reader), depths=sorted(depths.items())
    )


async def schemas(request: Request) -> HTMLResponse:
    """``GET /schemas``: every version of every topic's schema, newest first per topic."""
    bus = request.app.state.bus
    reader = getattr(bus, "schemas_async", None)
    found = list(await reader()) if callable(reader) else []
    rows = [
        {
            "topic": s.topic,
            "version": s.version,
            "compatibility": s.compatibility,
            "registered_at": s.registered_at,
            "pretty": json.dumps(json.loads(s.schema), indent=2, sort_keys=True),
        }
        for s in sorted(found, key=lambda s: (s.topic, -s.version))
    ]
    return _render(request, "schemas.html", supported=callable(reader), schemas=rows)


async def failed_jobs(request: Request) -> HTMLResponse:
    """``GET /failed-jobs``: the list, filtered by ``queue`` and ``q``."""
    q = request.query_params
    queue, text = q.get("queue") or None, q.get("q") or None
    bus = request.app.state.bus
    every = await read_failed_jobs(bus)
    return _render(
        request,
        "failed_jobs.html",
        supported=has_failed_jobs(bus),
        jobs=await read_failed_jobs(bus, queue, text),
        queues=sorted({str(getattr(j, "queue", "")) for j in every}),
        queue=queue,
        q=text,
    )


async def failed_job(request: Request) -> HTMLResponse:
    """``GET /failed-jobs/{id}``: one job with its fields and traceback."""
    wanted = request.path_params["id"]
    for job in await read_failed_jobs(request.app.state.bus):
        if str(job.id) == wanted:
            fields = {k: v for k, v in vars(job).items() if k not in ("traceback",)}
            return _render(request, "failed_job.html", job=job, fields=fields)
    return _render(request, "missing.html", status=404, what="failed job")


async def failed_job_action(request: Request) -> Response:
    """``POST /failed-jobs/{id}/{retry|discard}``, then back to the list."""
    await _check_csrf(request)
    bus, wanted, action = (
        request.app.state.bus,
        request.path_params["id"],
        request.path_params["action"],
    )
    method = bus.retry_failed_job if action == "retry" else bus.discard_failed_job
    await maybe_await(method(wanted))
    return _back(
        request, "/failed-jobs", f"{wanted}: {'retried' if action == 'retry' else 'discarded'}"
    )


async def failed_jobs_bulk(request: Request) -> Response:
    """``POST /failed-jobs/bulk``: retry or discard every job the filter matches."""
    form = await _check_csrf(request)
    bus = request.app.state.bus
    queue, text = form.get("queue") or None, form.get("q") or None
    jobs = await read_failed_jobs(bus, queue, text)
    retry = form.get("action") == "retry"
    for job in jobs:
        await maybe_await((bus.retry_failed_job if retry else bus.discard_failed_job)(job.id))
    verb = "retried" if retry else "discarded"
    return _back(request, "/failed-jobs", f"{verb} {len(jobs)} failed job(s)", queue=queue, q=text)


async def flows(request: Request) -> Response:
    """``GET /flows``: recent correlation IDs; ``?cid=`` redirects to that flow."""
    wanted = (request.query_params.get("cid") or "").strip()
    if wanted:
        return RedirectResponse(f"{_base(request)}/flows/{quote(wanted, safe='')}", status_code=303)
    return _render(request, "flows.html", recent=request.app.state.recorder.correlation_ids())


async def flow(request: Request) -> HTMLResponse:
    """``GET /flows/{cid}``: one correlation ID's steps as a timeline."""
    cid = request.path_params["cid"]
    state = request.app.state
    steps = await build_flow(state.bus, state.recorder, cid)
    return _render(request, "flow.html", cid=cid, steps=steps)


async def deferred(request: Request) -> HTMLResponse:
    """``GET /deferred``: deferred-work counters and recent failures."""
    counts = dict.fromkeys(_DEFER_COUNTERS, 0) | {
        k: v for k, v in stats().items() if k.startswith(("defer.", "hooks."))
    }
    failures = [
        s
        for s in request.app.state.recorder.recent(failed_only=True, limit=200)
        if s.kind in ("log", "deferred", "http")
    ][:50]
    return _render(request, "deferred.html", counts=counts, failures=failures)


async def asset(request: Request) -> Response:
    """``GET /assets/{name}``: the dashboard's own script and stylesheet."""
    name = request.path_params["name"]
    types = {"app.js": "text/javascript", "app.css": "text/css"}
    if name not in types:
        return Response("not found", status_code=404)
    return Response((_ASSETS / name).read_bytes(), media_type=types[name])


async def _refused(request: Request, exc: Exception) -> Response:
    return Response(
        "CSRF token missing or wrong, or no such action: reload the page", status_code=403
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    return _render(request, "missing.html", status=404, what="item")


def exception_handlers() -> dict[Any, Any]:
    """CSRF refusals answer 403; unknown IDs (``NotFoundError``) answer 404."""
    return {_Refused: _refused, NotFoundError: _not_found}


def routes() -> list[Route]:
    """Every route of the dashboard (all behind the token)."""
    return [
        Route("/", overview),
        Route("/dead-letters", dead_letters),
        Route("/dead-letters/bulk", dead_letters_bulk, methods=["POST"]),
        Route("/dead-letters/{id}", dead_letter),
        Route("/dead-letters/{id}/{action:str}", dead_letter_action, methods=["POST"]),
        Route("/queues", queues),
        Route("/schemas", schemas),
        Route("/failed-jobs", failed_jobs),
        Route("/failed-jobs/bulk", failed_jobs_bulk, methods=["POST"]),
        Route("/failed-jobs/{id}", failed_job),
        Route("/failed-jobs/{id}/{action:str}", failed_job_action, methods=["POST"]),
        Route("/flows", flows),
        Route("/flows/{cid:path}", flow),  # IDs come from headers: "/" happens
        Route("/deferred", deferred),
        Route("/assets/{name}", asset),
    ]
