"""Waiting in tests: for a condition, never for a fixed time."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05,
               what: str = "the condition") -> T:
    """Ask predicate until it returns a true value, and return that value; fail after timeout seconds.

    For what another process or thread does in its own time (a worker, a server starting).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout}s for {what}; last answer: {value!r}")
        time.sleep(interval)  # the next look
