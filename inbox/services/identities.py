"""Participant identities: the cached profile of each IGSID, per account.

The identities issue fills this in; ingestion already calls note_participant.
"""

from __future__ import annotations


def note_participant(account_id: int, igsid: str) -> None:
    """Called inside the ingest transaction for each participant of an event.

    Final behaviour: when the account has no identity for igsid, or it is older than
    IDENTITY_TTL_SECONDS, register (on_commit) a fetch_profile job with a deterministic
    id. Never for the account's own id.
    """
    return None
