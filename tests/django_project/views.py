"""Views that defer work in the ways Django apps do."""

from __future__ import annotations

import threading

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

from afterward import correlation_id, defer

ran: list[str] = []
seen_ids: list[str | None] = []
done = threading.Event()


class Rollback(Exception):
    pass


def record(label: str) -> None:
    ran.append(label)
    seen_ids.append(correlation_id())


def plain(request: HttpRequest) -> HttpResponse:
    defer(record, "plain")
    return JsonResponse({"cid": correlation_id()})


def failing(request: HttpRequest) -> HttpResponse:
    defer(record, "normal")
    defer(record, "always", always=True)
    raise RuntimeError("view failed")


def committed(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        defer(record, "outer")
        try:
            with transaction.atomic():
                defer(record, "savepoint-rolled-back")
                raise Rollback
        except Rollback:
            pass
        with transaction.atomic():
            defer(record, "savepoint-released")
        assert ran == []  # nothing joins before the outermost commit
    return HttpResponse("ok")


def rolled_back(request: HttpRequest) -> HttpResponse:
    try:
        with transaction.atomic():
            defer(record, "never")
            defer(record, "opted-out", after_commit=False)
            raise Rollback
    except Rollback:
        pass
    return HttpResponse("ok")


async def async_view(request: HttpRequest) -> HttpResponse:
    async def later() -> None:
        record("async")

    defer(later)
    return HttpResponse("async ok")
