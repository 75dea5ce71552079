"""http.configure(max_per_host=n): one cap per host, shared by every request on a loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

import afterward
from afterward import ConfigError, http
from afterward.http import _hosts
from tests.http.conftest import Server, delayed, tag


async def test_a_pool_never_exceeds_the_cap_on_one_host(server: Server) -> None:
    t = tag()
    http.configure(max_per_host=2)
    results = await http.pool([delayed(server, 50, t) for _ in range(20)], concurrency=16)
    assert all(r.status_code == 200 for r in results)  # type: ignore[union-attr]
    assert server.state.max_inflight[t] == 2
    assert _hosts._gates.get(asyncio.get_running_loop()) == {}  # idle hosts are forgotten


async def test_a_second_host_is_not_limited_by_the_firsts_cap(
    server: Server, other_server: Server
) -> None:
    first, second = tag(), tag()
    http.configure(max_per_host=2)
    await http.pool(
        [
            *(delayed(server, 50, first) for _ in range(20)),
            *(delayed(other_server, 50, second) for _ in range(4)),
        ],
        concurrency=16,
    )
    assert (server.state.max_inflight[first], server.state.max_inflight[second]) == (2, 2)
    # Listed last, the second host's requests did not queue behind the first's: they
    # were all sent before the first host's last one (10 rounds of 50 ms there).
    assert max(server.state.arrivals[second]) < max(server.state.arrivals[first])


async def test_pools_batches_deferred_batches_and_single_awaits_share_the_cap(
    server: Server,
) -> None:
    t = tag()
    http.configure(max_per_host=3)

    async def deferred() -> None:
        async with afterward.scope():  # runs the batch on exit, alongside the others
            http.batch([delayed(server, 40, t) for _ in range(6)]).defer()

    await asyncio.gather(
        deferred(),
        http.pool([delayed(server, 40, t) for _ in range(6)]),
        http.batch([delayed(server, 40, t) for _ in range(6)]).send(),
        *(delayed(server, 40, t) for _ in range(6)),
    )
    assert server.state.hits[t] == 24
    assert server.state.max_inflight[t] == 3


def test_the_sync_twins_share_one_cap(server: Server) -> None:
    t = tag()
    http.configure(max_per_host=2)
    threads = [
        threading.Thread(target=lambda: http.pool_sync([delayed(server, 40, t) for _ in range(4)]))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert server.state.hits[t] == 12
    assert server.state.max_inflight[t] == 2


async def test_retries_wait_their_turn_under_the_cap(server: Server) -> None:
    tags = [tag() for _ in range(6)]
    http.configure(max_per_host=1)
    results = await http.pool(
        [http.get(f"{server.url}/fail/1/503", params={"tag": t}) for t in tags],
        retry=http.Retry(1, backoff=0),
    )
    assert [r.status_code for r in results] == [200] * 6  # type: ignore[union-attr]
    assert [server.state.hits[t] for t in tags] == [2] * 6


async def test_no_cap_by_default_and_none_lifts_it(server: Server) -> None:
    t, lifted = tag(), tag()
    await http.pool([delayed(server, 100, t) for _ in range(8)])
    http.configure(max_per_host=2)
    http.configure(max_per_host=None)
    await http.pool([delayed(server, 100, lifted) for _ in range(8)])
    assert server.state.max_inflight[t] >= 6
    assert server.state.max_inflight[lifted] >= 6


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "2"])
def test_bad_max_per_host_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_per_host must be None or an int >= 1"):
        http.configure(max_per_host=bad)  # type: ignore[arg-type]
