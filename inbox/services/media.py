"""Attachment media: download, storage and serving (the media issue fills this in)."""

from __future__ import annotations


def note_attachments(attachment_ids: list[int]) -> None:
    """Called inside the ingest transaction once new attachments have ids (after flush).

    Final behaviour: mark keepable attachments pending and register (on_commit) a
    download_media job per attachment; story media is never downloaded.
    """
    return None
