"""Live updates: writers publish small events with ids; each web process renders and fans out.

Events (type: ids):
    message.created       conversation_id, message_id
    message.updated       conversation_id, message_id
    conversation.updated  conversation_id
    job.progress          job_run_id
    account.updated       (none)

They travel on the Redis channel rkey("live", account_id) as JSON
{"type": ..., "account_id": ..., **ids}. Publish only after the data is committed:
use publish_after_commit inside a transaction, or publish once it is committed.
"""

from __future__ import annotations

import json
import logging

from ..extensions import get_redis, on_commit, rkey

log = logging.getLogger(__name__)

EVENT_TYPES = ("message.created", "message.updated", "conversation.updated", "job.progress", "account.updated")


def channel(account_id: int) -> str:
    return rkey("live", account_id)


def publish(account_id: int, event_type: str, **ids: int | str) -> None:
    """Send one event to every web process now (the data must already be committed)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown live event {event_type!r}")
    payload = json.dumps({"type": event_type, "account_id": account_id, **ids})
    try:
        get_redis().publish(channel(account_id), payload)
    except Exception:  # a lost live update is repaired by the client's refetch on reconnect
        log.warning("live publish failed for %s", payload, exc_info=True)


def publish_after_commit(account_id: int, event_type: str, **ids: int | str) -> None:
    """Publish once the current transaction commits (never if it rolls back)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown live event {event_type!r}")
    on_commit(lambda: publish(account_id, event_type, **ids))
