"""Redis failures for one test: down (the app's client points at a port nobody listens on), or
flushed (every key of the test's namespace gone, as FLUSHALL would do to a deployment)."""

from __future__ import annotations

import socket
from contextlib import contextmanager

import redis

from inbox.extensions import get_redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_down(app):
    """While inside, the app's Redis refuses connections (nothing listens there)."""
    original = app.extensions.get("inbox_redis")
    app.extensions["inbox_redis"] = redis.Redis(host="127.0.0.1", port=_free_port(), socket_connect_timeout=0.2)
    try:
        yield
    finally:
        app.extensions["inbox_redis"] = original


def flush_redis(app) -> int:
    """Delete every key of this test's deployment (its namespace), jobs and schedules included."""


    r = get_redis(app)
    namespace = app.config["REDIS_NAMESPACE"]
    keys = list(r.scan_iter(match=f"*{namespace}*", count=1000))
    if keys:
        r.delete(*keys)
    return len(keys)
