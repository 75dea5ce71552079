"""The backend's Lua scripts: loaded from ``scripts/<name>.lua`` once, run by SHA.

Each multi-key write is one script, so Redis runs it atomically. The sources live in
``.lua`` files beside this module (package data: the wheel ships them) and are read with
:mod:`importlib.resources` at import, so they load from a wheel, a source checkout or a
zip archive alike; their SHA1s are computed once. :func:`run` sends ``EVALSHA`` and
falls back to ``EVAL`` when the server does not know the script (a restarted server, or
another one behind the same URL), which caches it again.

Sharing Lua between scripts: a script's leading lines ``-- include: <file>.lua`` name
library files (named with a leading underscore, not scripts themselves) whose text is
prepended to the script's body in place of those lines. ``commit.lua`` and
``member_commit.lua`` both start with ``-- include: _record_done.lua``, the one
definition of ``record_done``; every ``queue_*.lua`` includes ``_queue_lib.lua`` (the
work queue's key layout and job moves). Includes are one level deep: a library includes
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha1
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

__all__ = [
    "ADD_SCHEMA",
    "ADOPT",
    "APPEND",
    "BEGIN_BATCH",
    "CLAIM",
    "COMMIT",
    "FETCH",
    "LEAVE",
    "MEMBER_COMMIT",
    "PROCESSED",
    "QUEUE_ACK",
    "QUEUE_CLAIM",
    "QUEUE_DELETE",
    "QUEUE_DEPTH",
    "QUEUE_DUE",
    "QUEUE_ENQUEUE",
    "QUEUE_EXTEND",
    "QUEUE_FAIL",
    "QUEUE_MARK_READY",
    "QUEUE_RELEASE",
    "QUEUE_REQUEUE",
    "QUEUE_RESERVE",
    "QUEUE_RETRY",
    "REGISTER",
    "RELEASE",
    "REWIND",
    "SCRIPTS",
    "TAKE_OVER",
    "TRIM_STATE",
    "Script",
    "load",
    "run",
]

_INCLUDE = "-- include: "
_FILES = resources.files(__name__.rpartition(".")[0]).joinpath("scripts")


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script ready to send.

    Attributes:
        name: the file's name without ``.lua``.
        source: the text sent with ``EVAL``, includes resolved.
        sha: its SHA1, sent with ``EVALSHA``.
    """

    name: str
    source: str
    sha: str


def _read(file: str) -> str:
    return _FILES.joinpath(file).read_text(encoding="utf-8")


def load(name: str) -> Script:
    """Read ``scripts/<name>.lua`` and resolve its includes (see the module docstring).

    Raises:
        FileNotFoundError: the script or a library it includes is missing.
        ValueError: a library includes another (includes are one level deep).
    """
    lines = _read(f"{name}.lua").splitlines(keepends=True)
    parts: list[str] = []
    while lines and lines[0].startswith(_INCLUDE):
        library = _read(lines.pop(0).removeprefix(_INCLUDE).strip())
        if _INCLUDE in library:
            raise ValueError(f"{name}.lua includes a library that includes another")
        parts.append(library)
    source = "".join(parts) + "".join(lines)
    return Script(name, source, sha1(source.encode(), usedforsecurity=False).hexdigest())


APPEND = load("append")
REGISTER = load("register")
COMMIT = load("commit")
MEMBER_COMMIT = load("member_commit")
PROCESSED = load("processed")
FETCH = load("fetch")
REWIND = load("rewind")
CLAIM = load("claim")
RELEASE = load("release")
TAKE_OVER = load("take_over")
LEAVE = load("leave")
BEGIN_BATCH = load("begin_batch")
ADD_SCHEMA = load("add_schema")
ADOPT = load("adopt")
TRIM_STATE = load("trim_state")

# The work queue (``_queue.py``), each sharing ``_queue_lib.lua``.
QUEUE_ACK = load("queue_ack")
QUEUE_DELETE = load("queue_delete")
QUEUE_DEPTH = load("queue_depth")
QUEUE_ENQUEUE = load("queue_enqueue")
QUEUE_EXTEND = load("queue_extend")
QUEUE_FAIL = load("queue_fail")
QUEUE_RELEASE = load("queue_release")
QUEUE_REQUEUE = load("queue_requeue")
QUEUE_RESERVE = load("queue_reserve")
QUEUE_RETRY = load("queue_retry")
# A Kafka bus's job marks (``JobLedger``), on the same layout.
QUEUE_CLAIM = load("queue_claim")
QUEUE_DUE = load("queue_due")
QUEUE_MARK_READY = load("queue_mark_ready")

#: Every script, by name.
SCRIPTS: dict[str, Script] = {
    s.name: s
    for s in (
        APPEND,
        REGISTER,
        COMMIT,
        MEMBER_COMMIT,
        PROCESSED,
        FETCH,
        REWIND,
        CLAIM,
        RELEASE,
        TAKE_OVER,
        LEAVE,
        BEGIN_BATCH,
        ADD_SCHEMA,
        ADOPT,
        TRIM_STATE,
        QUEUE_ACK,
        QUEUE_DELETE,
        QUEUE_DEPTH,
        QUEUE_ENQUEUE,
        QUEUE_EXTEND,
        QUEUE_FAIL,
        QUEUE_RELEASE,
        QUEUE_REQUEUE,
        QUEUE_RESERVE,
        QUEUE_RETRY,
        QUEUE_CLAIM,
        QUEUE_DUE,
        QUEUE_MARK_READY,
    )
}


async def run(client: Redis, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """Run ``script`` with ``keys`` and ``args``; its reply.

    ``EVALSHA`` first: the usual case sends 40 bytes instead of the source. On
    ``NoScriptError`` the source is sent once with ``EVAL``, which caches it again.
    """
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await client.eval(script.source, len(keys), *keys, *args)
