"""A throwaway database per test session: a SQLite file, or a new PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from inbox.config import normalize_database_url


def is_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql"))


class SessionDatabase:
    """Creates the session's database and drops it at the end."""

    def __init__(self, tmp_dir: Path):
        self.tmp_dir = tmp_dir
        self._admin_url = None
        self.name = None
        base = os.environ.get("DATABASE_URL")
        if base and is_postgres():
            url = make_url(normalize_database_url(base))
            self.name = f"inbox_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            self._admin_url = url
            engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
            engine.dispose()
            self.url = url.set(database=self.name).render_as_string(hide_password=False)
        else:
            self.url = f"sqlite:///{tmp_dir / 'inbox-test.sqlite3'}"

    @property
    def dialect(self) -> str:
        return "postgresql" if self.name else "sqlite"

    def drop(self) -> None:
        if not self.name:
            return
        engine = sa.create_engine(self._admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        engine.dispose()


def empty_all_tables(db) -> None:
    """Remove every row (fast enough per test, and safe with server threads)."""
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("TRUNCATE TABLE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(sa.text(f'DELETE FROM "{table}"'))
