"""One place for what staff read: display names and stable DOM ids."""

from __future__ import annotations

from typing import Any


def display_name(identity: Any | None, igsid: str | None = None) -> str:
    """@username, else name, else "Instagram user ·" and the id's last 4 digits; never a mask."""
    username = usable_name(getattr(identity, "username", None))
    if username:
        return f"@{username.lstrip('@')}"
    name = usable_name(getattr(identity, "name", None))
    if name:
        return name
    igsid = (igsid or getattr(identity, "igsid", None) or "").strip()
    return f"Instagram user ·{igsid[-4:] or '????'}"


def is_fallback_name(identity: Any | None) -> bool:
    """True when only the id is known (display_name fell back to its last digits)."""
    return not (usable_name(getattr(identity, "username", None)) or usable_name(getattr(identity, "name", None)))


# What staff read next to a fallback name (a tooltip in the UI, a note in the CLI).
FALLBACK_HINT = "Only the Instagram id is known so far; \u201cRefresh identities\u201d may load the name."


def name_hint(identity: Any | None) -> str:
    """The hint that a refresh may help, for a fallback name; "" when the name is known."""
    return FALLBACK_HINT if is_fallback_name(identity) else ""


def usable_name(value: Any) -> str | None:
    """A name worth showing: text on one line, not blank, not a masked placeholder like user_******."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    if not text.strip("@") or "**" in text:
        return None
    return text


def dom_id(kind: str, ident: object) -> str:
    """The DOM id of a thing: dom_id("conversation", 42) -> "conversation-42"."""
    return f"{kind}-{ident}"
