"""One place for what staff read: display names and stable DOM ids."""

from __future__ import annotations

from typing import Any


def display_name(identity: Any | None, igsid: str | None = None) -> str:
    """@username, else name, else "Instagram user ·" and the id's last 4 digits; never a mask."""
    if identity is not None:
        if getattr(identity, "username", None):
            return f"@{identity.username}"
        if getattr(identity, "name", None):
            return identity.name
        igsid = igsid or getattr(identity, "igsid", None)
    tail = (igsid or "")[-4:] or "????"
    return f"Instagram user ·{tail}"


def is_fallback_name(identity: Any | None) -> bool:
    """True when only the id is known, so the UI can hint that a refresh may help."""
    return identity is None or not (getattr(identity, "username", None) or getattr(identity, "name", None))


def dom_id(kind: str, ident: object) -> str:
    """The DOM id of a thing: dom_id("conversation", 42) -> "conversation-42"."""
    return f"{kind}-{ident}"
