"""What applying one event did: kept per event with its delivery, printed by `webhooks ingest`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...models import Message
from ..events import Event, IgnoredEvent, MessageEvent

ACTIONS = ("created", "duplicate", "confirmed", "claimed", "updated", "deleted", "ignored")
COMMENT_TYPES = ("comment", "mention")


@dataclass
class Outcome:
    """What applying one event did; `line()` is the stable `webhooks ingest` output."""

    index: int
    type: str
    action: str
    reason: str = ""
    account: str | None = None
    account_id: int | None = None
    conversation_id: int | None = None
    customer_igsid: str | None = None
    mid: str | None = None
    direction: str | None = None
    sender_kind: str | None = None
    message_id: int | None = None
    error: str | None = None
    # Comments: Instagram's comment id, the media it is on, and our row.
    comment_id: str | None = None
    media_id: str | None = None
    comment_row_id: int | None = None
    # What parsing changed or refused in the event (an impossible time, an id that is not one).
    note: str | None = None

    def line(self) -> dict[str, Any]:
        keys = ["type", "account", "conversation_id", "customer_igsid", "mid", "direction", "sender_kind",
                "action", "reason"]
        if self.type in COMMENT_TYPES:
            keys[5:5] = ["comment_id", "media_id"]
        return {key: getattr(self, key) for key in keys}

    def result(self) -> dict[str, Any]:
        """The per-event record kept in WebhookDelivery.results."""
        return {k: v for k, v in vars(self).items() if v is not None and v != ""}

    def fill(self, message: Message, action: str, reason: str = "") -> Outcome:
        """The event ended at this message."""
        self.action = action
        self.reason = reason or self.reason
        self.conversation_id = message.conversation_id
        self.mid = message.mid
        self.direction = message.direction
        self.sender_kind = message.sender_kind
        self.message_id = message.id
        return self


def event_type(event: Event) -> str:
    if isinstance(event, IgnoredEvent):
        return event.type
    if isinstance(event, MessageEvent):
        return "echo" if event.is_echo else "message"
    return event.kind
