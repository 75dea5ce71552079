"""The event bus: durable events with consumer groups (section 5 of the contract).

``from afterward import EventBus, Event`` is the usual spelling; see ``docs/events.md``.
"""

from afterward.events._bus import EventBus
from afterward.events._envelope import DeadLetter, Event

__all__ = ["DeadLetter", "Event", "EventBus"]
