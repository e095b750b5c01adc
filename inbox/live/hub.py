"""The live hub of one web process: one Redis listener, one writer, and the open /live sockets.

One Hub per app and process: ONE Redis pub/sub listener thread (a pattern subscription on every
account's channel) renders each batch of events once per account (inbox.live.frames) when a
socket of that account is open here, and ONE writer thread sends the frames to the sockets.
Each socket's own request thread only waits (for a close, a membership check): waking a hundred
threads per event costs more than the sends themselves. A frame that waits behind others for the
same account is merged with them, so a burst becomes one send per socket. A socket that cannot
take a frame within SEND_TIMEOUT is closed, and so is every socket when Redis was lost or the
process shuts down (1012): the client reconnects and refetches what it shows.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable

from flask import Flask

from ..extensions import get_redis
from . import frames
from .publish import ACCESS_REVOKED, STATE_EVENTS, channel_pattern, watched_key

log = logging.getLogger(__name__)

CLOSE = object()
MAX_BATCH = 200  # events the listener renders into one frame when they arrived together
SEND_TIMEOUT = 5.0  # seconds a socket may block the writer before it is dropped


def init_app(app: Flask) -> None:
    """app.extensions["inbox_shutdown"] (gunicorn's worker hook calls it) closes this process's sockets."""
    previous = app.extensions.get("inbox_shutdown")

    def shutdown() -> None:
        current = app.extensions.get("inbox_live_hub")
        if current is not None and current.pid == os.getpid():
            current.stop()
        if previous is not None:
            previous()

    app.extensions["inbox_shutdown"] = shutdown
    # Render once: a writer (the applier, a request) renders the frame of a watched account's
    # events itself and publishes it with them (live/publish.py); hubs forward the bytes.
    app.extensions["inbox_live_prerender"] = lambda account_id, events: prerender(app, account_id, events)


def prerender(app: Flask, account_id: int, events: list[dict]) -> str | None:
    """The frame of one account's events, rendered in the writer's process (its own app context)."""
    with app.app_context():
        return frames.render_frames(app, account_id, coalesce(events))


def coalesce(events: list[dict]) -> list[dict]:
    """Drop repeats of state events within a batch (the first keeps its place).

    A repeat's extra flags are kept on the first (`product=1` says the thread's product panel
    changed too)."""
    seen: dict[tuple, dict] = {}
    out = []
    for event in events:
        kind = event.get("type")
        if kind in STATE_EVENTS and not event.get("removed_message_id"):
            key_name = STATE_EVENTS[kind]
            key = (kind, event.get(key_name) if key_name else None)
            if key in seen:
                kept = seen[key]
                kept.update({k: v for k, v in event.items() if v and not kept.get(k)})
                continue
            event = dict(event)
            seen[key] = event
        out.append(event)
    return out


class Connection:
    """One open /live socket: who it is, which accounts it hears, and how to send to it."""

    def __init__(self, user_id: int, account_ids: Iterable[int], send: Callable[[str], None] | None = None):
        self.user_id = user_id
        self.account_ids = frozenset(account_ids)
        self._send = send
        self.ready = False  # set once the socket's first frame went out
        self.closed = False
        self.close_code = 1000
        self.close_reason = ""
        self.wake = threading.Event()  # the request thread waits on it
        self.frames_sent = 0

    def deliver(self, frame: str) -> None:
        """Called by the writer thread only."""
        if self.closed or not self.ready or self._send is None:
            return
        try:
            self._send(frame)
            self.frames_sent += 1
        except Exception:  # gone, or too slow to take it: the client reconnects and refetches
            self.close(1011, "Could not deliver live updates")

    def close(self, code: int = 1012, reason: str = "Server restarting") -> None:
        if not self.closed:
            self.closed = True
            self.close_code, self.close_reason = code, reason
        self.wake.set()


class Hub:
    """The per-process listener, writer and the sockets they feed."""

    def __init__(self, app: Flask):
        self.app = app
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._by_account: dict[int, set[Connection]] = {}
        self._thread: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self.events_seen = 0
        self.frames_rendered = 0

    # Sockets --------------------------------------------------------------------------------

    def add(self, connection: Connection) -> None:
        with self._lock:
            first = [a for a in connection.account_ids if a not in self._by_account]
            for account_id in connection.account_ids:
                self._by_account.setdefault(account_id, set()).add(connection)
        self._watch(first, 1)
        self.start()

    def remove(self, connection: Connection) -> None:
        with self._lock:
            last = []
            for account_id in connection.account_ids:
                group = self._by_account.get(account_id)
                if group is not None:
                    group.discard(connection)
                    if not group:
                        del self._by_account[account_id]
                        last.append(account_id)
        self._watch(last, -1)

    def _watch(self, account_ids: list[int], step: int) -> None:
        """Count this process in or out of the accounts whose frames writers render (render once).

        A process killed without its shutdown leaves its counts behind: writers then render
        frames nobody watches, which costs time and loses nothing.
        """
        if not account_ids:
            return
        try:
            r = get_redis(self.app)
            key = watched_key(self.app)
            pipe = r.pipeline(transaction=False)
            for account_id in account_ids:
                pipe.hincrby(key, account_id, step)
            pipe.execute()
        except Exception:
            log.warning("live: the watched-accounts count was not updated", exc_info=True)

    def resubscribe(self, connection: Connection, account_ids: Iterable[int]) -> None:
        """Membership changed while the socket was open."""
        self.remove(connection)
        connection.account_ids = frozenset(account_ids)
        if connection.account_ids:
            self.add(connection)

    def revoke(self, user_id: int, account_id: int | None = None) -> int:
        """Close user_id's sockets (all, or those hearing account_id: narrowed, or closed when
        nothing is left), at once; returns how many were closed or narrowed."""
        touched = 0
        for connection in self.connections():
            if connection.user_id != user_id or connection.closed:
                continue
            if account_id is None:
                connection.close(1008, "Signed out")
            elif int(account_id) in connection.account_ids:
                remaining = connection.account_ids - {int(account_id)}
                if remaining:
                    self.resubscribe(connection, remaining)
                else:
                    connection.close(1008, "No longer a member")
            else:
                continue
            touched += 1
        return touched

    def connections(self, account_id: int | None = None) -> list[Connection]:
        with self._lock:
            if account_id is not None:
                return list(self._by_account.get(account_id, ()))
            return list({c for group in self._by_account.values() for c in group})

    # The listener and the writer --------------------------------------------------------------

    def start(self, wait: float = 5.0) -> None:
        """Start the threads once (lazily: a process without sockets needs none)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._stopping.is_set():
                self._thread.join(2.0)  # a stop just happened; the server serves again
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._ready.clear()
                self._thread = threading.Thread(target=self._run, name="inbox-live-listener", daemon=True)
                self._thread.start()
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write, name="inbox-live-writer", daemon=True)
                self._writer.start()
        self._ready.wait(wait)  # subscribed before the first socket says it is live

    def _run(self) -> None:
        pattern = channel_pattern(self.app)
        failures = 0
        while not self._stopping.is_set():
            pubsub = None
            try:
                with self.app.app_context():
                    client = get_redis(self.app)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(pattern)
                if failures:
                    # Events were lost while Redis was away: every socket reconnects and refetches.
                    for connection in self.connections():
                        connection.close(1012, "Live updates restarted")
                failures = 0
                self._ready.set()
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    # Whatever else already waits goes in the same batch (bounded).
                    batch = [message]
                    while len(batch) < MAX_BATCH:
                        more = pubsub.get_message(timeout=0)
                        if more is None:
                            break
                        batch.append(more)
                    self._dispatch([m["data"] for m in batch if m.get("type") == "pmessage"])
            except Exception:
                if self._stopping.is_set():
                    break  # the app is shutting down; its Redis client may be gone already
                failures += 1
                log.warning("live listener lost Redis (attempt %d); reconnecting", failures, exc_info=True)
                self._ready.set()
                self._stopping.wait(min(5.0, 0.2 * 2 ** min(failures, 5)))
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass

    def _dispatch(self, raw: list[bytes | str]) -> None:
        """Forward the frames writers rendered; render once per account what came without one."""
        by_account: dict[int, list[dict]] = {}
        for data in raw:
            try:
                event = json.loads(data)
                if isinstance(event, dict) and event.get("type") == ACCESS_REVOKED:
                    self.revoke(int(event["user_id"]), event.get("account_id"))
                    continue
                account_id = int(event["account_id"])
            except (ValueError, KeyError, TypeError):
                log.warning("live listener ignored a malformed event %r", data[:200])
                continue
            if event.get("type") != "frame":
                self.events_seen += 1
            if not event.get("framed"):  # a framed event's frame follows it
                by_account.setdefault(account_id, []).append(event)
        for account_id, events in by_account.items():
            if not self.connections(account_id):
                continue
            parts: list[str] = []
            local: list[dict] = []
            for event in [*events, None]:
                if event is not None and event.get("type") != "frame":
                    local.append(event)
                    continue
                if local:
                    try:
                        parts.append(frames.render_frames(self.app, account_id, coalesce(local)) or "")
                    except Exception:
                        log.exception("rendering live events %s failed", local)
                    local = []
                if event is not None:
                    parts.append(str(event.get("html") or ""))
            frame = "".join(parts)
            if frame:
                self.frames_rendered += 1
                self._outbox.put((account_id, frame))

    def _write(self) -> None:
        while True:
            item = self._outbox.get()
            if item is CLOSE:
                return
            # Frames that queued up meanwhile: one send per socket and account, in order.
            pending: dict[int, list[str]] = {item[0]: [item[1]]}
            while True:
                try:
                    more = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if more is CLOSE:
                    self._outbox.put(CLOSE)
                    break
                pending.setdefault(more[0], []).append(more[1])
            for account_id, parts in pending.items():
                frame = "".join(parts)
                for connection in self.connections(account_id):
                    connection.deliver(frame)

    def stop(self, code: int = 1012, reason: str = "Server restarting") -> None:
        """Shutdown: every socket closes with 1012 (clients reconnect), the listener ends."""
        self._stopping.set()
        for connection in self.connections():
            connection.close(code, reason)


_hub_lock = threading.Lock()


def get_hub(app: Flask) -> Hub:
    """This process's Hub for app (a forked child gets its own)."""
    current = app.extensions.get("inbox_live_hub")
    if current is not None and current.pid == os.getpid():
        return current
    with _hub_lock:
        current = app.extensions.get("inbox_live_hub")
        if current is None or current.pid != os.getpid():
            current = Hub(app)
            app.extensions["inbox_live_hub"] = current
    return current
