"""Transactions that meet a concurrent writer, and database errors told apart.

Services that insert rows other processes may insert at the same moment (a message by
its mid, a conversation by its customer, a post's link) let the database decide: a unique
constraint fails, or the code notices and raises `Conflict`. `retry_on_conflict` then
rolls everything back and runs the work again from the start, when it finds what the
other writer committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from ..extensions import db

log = logging.getLogger(__name__)

T = TypeVar("T")
ATTEMPTS = 3


class Conflict(Exception):
    """A concurrent writer got there first; the transaction is run again from the start."""


def retry_on_conflict(work: Callable[[], T], *, attempts: int = ATTEMPTS,
                      on_conflict: Callable[[Exception], None] | None = None) -> T:
    """Run `work()` and commit; on a conflict roll back and run it again, up to `attempts` times.

    A conflict is an IntegrityError or `Conflict`; the last one is raised. `on_conflict(exc)`
    runs after each rollback (to forget what the failed try cached). Any other error rolls
    back and is raised at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            result = work()
            db.session.commit()
            return result
        except (IntegrityError, Conflict) as exc:
            db.session.rollback()
            if on_conflict is not None:
                on_conflict(exc)
            if attempt == attempts:
                raise
            log.debug("conflict with a concurrent writer (%s); trying again", exc)
        except BaseException:
            db.session.rollback()
            raise
    raise ValueError("attempts must be at least 1")


def is_outage(exc: BaseException) -> bool:
    """A database that is down or unreachable, as opposed to a problem with one piece of work."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def describe_error(exc: BaseException) -> str:
    """One line for people: the database's own words, without the SQL statement."""
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"[:300]
