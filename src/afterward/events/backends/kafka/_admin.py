"""Topic retention on Kafka: ``retention.ms`` set at creation and kept in sync.

A topic the bus creates gets ``retention.ms`` from the bus's retention for it
(``-1``: keep everything); when that changes (``bus.retention(topic, ...)``, or a bus
started with another ``retention=``), the next pruning pass sets it with
``IncrementalAlterConfigs``, which changes that one setting and leaves the topic's other
overrides alone (the older ``AlterConfigs`` resets every setting it is not given).
aiokafka has no ``IncrementalAlterConfigs`` request, so its version 0 is defined here
with aiokafka's protocol types. The broker deletes what is older than ``retention.ms``
itself, a segment at a time (tansu, the broker of the tests, stores the setting but
deletes nothing by time).
"""

from __future__ import annotations

from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

__all__ = ["RETENTION_MS", "retention_configs", "retention_ms", "set_retention"]

#: The topic setting the broker deletes old events by.
RETENTION_MS = "retention.ms"
_TOPIC = 2  # ConfigResource type of a topic
_SET = 0  # IncrementalAlterConfigs operation


class IncrementalAlterConfigsResponse_v0(Response):  # type: ignore[misc]
    """The broker's answer: an error code per resource."""

    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "responses",
            Array(
                ("error_code", Int16),
                ("error_message", String("utf-8")),
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
            ),
        ),
    )


class IncrementalAlterConfigsRequest_v0(RequestStruct):  # type: ignore[misc]
    """Set or delete single settings of resources (KIP-339)."""

    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        (
            "resources",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                (
                    "configs",
                    Array(
                        ("name", String("utf-8")),
                        ("config_operation", Int8),
                        ("value", String("utf-8")),
                    ),
                ),
            ),
        ),
        ("validate_only", Boolean),
    )


class IncrementalAlterConfigsRequest(Request[IncrementalAlterConfigsRequest_v0]):  # type: ignore[misc]
    """The request builder aiokafka's client negotiates the version of."""

    API_KEY = 44

    def __init__(self, resources: list[Any]) -> None:
        self._resources = resources

    def build(
        self, request_struct_class: type[IncrementalAlterConfigsRequest_v0]
    ) -> IncrementalAlterConfigsRequest_v0:
        return request_struct_class(self._resources, False)


def retention_ms(seconds: float | None) -> str:
    """``retention.ms`` for a retention in seconds (``"-1"``: keep everything)."""
    return "-1" if seconds is None else str(max(1, round(seconds * 1000)))


def retention_configs(seconds: float | None) -> dict[str, str]:
    """The ``topic_configs`` of a topic created with that retention."""
    return {RETENTION_MS: retention_ms(seconds)}


async def set_retention(admin: AIOKafkaAdminClient, topic: str, seconds: float | None) -> None:
    """Set the Kafka topic ``topic``'s ``retention.ms``, nothing else.

    Raises:
        KafkaError: the broker refused (aiokafka's error for its code).
    """
    request = IncrementalAlterConfigsRequest(
        [(_TOPIC, topic, [(RETENTION_MS, _SET, retention_ms(seconds))])]
    )
    response: Any = await admin._send_request(request)  # aiokafka has no public call for it
    for code, message, _, name in response.responses:
        if code:
            error = kafka_errors.for_code(code)
            raise error(f"setting {RETENTION_MS} of {name!r}: {message or error.__name__}")
