"""Live updates in tests and benchmarks: a websocket client for /live (websocket-client, real
HTTP), and the events published on an account's Redis channel."""

from __future__ import annotations

import json
import struct
import time
import uuid

import redis
import websocket

MARKER = "test.marker"


def drain(pubsub, *, close: bool = True, timeout: float = 10) -> list[dict]:
    """Every live event published so far on the channels pubsub listens to, in order.

    Publishes a marker on each channel and reads up to the last one: Redis hands a channel's
    messages to a subscriber in the order it took the PUBLISH commands, so whatever was
    published before this call arrives before its marker.
    """
    client = redis.Redis(connection_pool=pubsub.connection_pool)
    markers = {}
    for channel in list(pubsub.channels):
        marker = uuid.uuid4().hex
        markers[marker] = channel
        client.publish(channel, json.dumps({"type": MARKER, "marker": marker}))
    events = []
    deadline = time.monotonic() + timeout
    while markers:
        assert time.monotonic() < deadline, f"no marker back within {timeout}s; got {events}"
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=max(0.01, deadline - time.monotonic()))
        if message is None or message["type"] != "message":
            continue
        event = json.loads(message["data"])
        if event.get("type") == MARKER:
            markers.pop(event["marker"], None)
        else:
            events.append(event)
    if close:
        pubsub.close()
    return events


def session_cookie(client) -> str:
    """The Cookie header of a logged-in Flask test client, for a socket or requests."""
    cookie = client.get_cookie("session")
    assert cookie is not None, "log the client in first"
    return f"session={cookie.value}"


class LiveSocket:
    """One /live connection; frames() reads what the server pushed."""

    def __init__(self, base_url: str, cookie: str | None, *, account: int | None = None,
                 origin: str | None = None, timeout: float = 10):
        url = base_url.replace("http://", "ws://", 1) + "/live" + (f"?account={account}" if account else "")
        headers = [f"Origin: {origin}"] if origin else []
        self.close_code: int | None = None
        self.ws = websocket.create_connection(url, cookie=cookie, header=headers, timeout=timeout,
                                              suppress_origin=origin is None)

    def next_frame(self, timeout: float = 5) -> str | None:
        """The next text frame, None on timeout; records the close code when the server closes."""
        self.ws.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                return None
            except websocket.WebSocketConnectionClosedException:
                return None
            if opcode == websocket.ABNF.OPCODE_TEXT:
                return data.decode()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                return None
        return None

    def wait_for(self, needle: str, timeout: float = 10) -> str:
        """The first frame containing needle (earlier frames are skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self.next_frame(max(0.05, deadline - time.monotonic()))
            if frame is not None and needle in frame:
                return frame
            if self.close_code is not None:
                break
        raise AssertionError(f"no frame with {needle!r} within {timeout}s (close code {self.close_code})")

    def wait_closed(self, timeout: float = 10) -> int | None:
        deadline = time.monotonic() + timeout
        while self.close_code is None and time.monotonic() < deadline:
            if self.next_frame(max(0.05, deadline - time.monotonic())) is None and not self.ws.connected:
                break
        return self.close_code

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass

