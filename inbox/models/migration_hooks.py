"""Hooks shared by migrations/env.py and the test that models and migrations agree."""

from __future__ import annotations

from .types import UTCDateTime


def include_object(obj, name, type_, reflected, compare_to):
    """Leave out what migrations manage by hand (search indexes of one dialect)."""
    if type_ == "table" and reflected and compare_to is None and name.startswith(("sqlite_", "messages_fts")):
        return False
    # Search indexes of migrations 0002 (pg_trgm GIN on PostgreSQL) and pipeline2 (word pairs).
    if (type_ == "index" and reflected and compare_to is None and name
            and (name.endswith("_trgm") or name == "ix_messages_word_pairs")):
        return False
    if obj is not None and getattr(obj, "info", {}).get("manual_migration"):
        return False
    return True


def render_item(type_, obj, autogen_context):
    """Write our column types as plain SQLAlchemy types in migration files."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False
