"""Products and the assignment of conversations to them (the products issue fills this in)."""

from __future__ import annotations


def note_evidence(message_id: int) -> None:
    """Called inside the ingest transaction for a message that carries product evidence.

    Evidence: an ig_post/share/ig_reel attachment with a media id, an ad referral, a shop
    product referral. Final behaviour: register (on_commit) the assignment job for it.
    """
    return None
