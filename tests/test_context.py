"""Generated correlation IDs: UUID4-shaped, unique, and unique across forked children."""

from __future__ import annotations

import os
import uuid
import warnings

from afterward._context import new_correlation_id


def test_ids_are_uuid4_and_unique() -> None:
    ids = [new_correlation_id() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:1000]:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_forked_children_do_not_repeat_the_parents_ids() -> None:
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about fork() with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: report the next ID and leave at once
        os.write(write, new_correlation_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent_id = new_correlation_id()
    assert child_id[:24] != parent_id[:24]  # a new random prefix in the child
