"""Webhook deliveries for tests: the bytes Meta would send, signed like Meta signs them, and an
independent receiver that checks what a sender (the simulator) sends."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tests.support.settings import APP_SECRET

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
ACCOUNT = "17841400000000001"  # the fixtures' shop (entry.id)
SECOND_ACCOUNT = "17841400000000002"
CUSTOMER = "9100000000000001"
T0 = 1767225600000  # 2026-01-01T00:00:00Z, the fixtures' base time in ms


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.json"))


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def encode(payload: Any) -> bytes:
    """Like Meta: compact JSON with non-ASCII escaped as \\uXXXX and "/" as "\\/"."""
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(client, payload: Any, secret: str | None = None, **headers):
    """POST a delivery to the webhook, signed with the app secret the tests configure."""
    body = encode(payload)
    headers.setdefault("X-Hub-Signature-256", sign(body, secret or APP_SECRET))
    # Meta sends no CSRF token; the inbox's own test client would add one unless told not to.
    extra = {"csrf": False} if hasattr(client, "csrf_token") else {}
    return client.post("/webhooks/instagram", data=body, headers={"Content-Type": "application/json", **headers},
                       **extra)


# --- Payload builders: the `messaging` items of Instagram's webhook events -----------

def envelope(*items: dict, account: str = ACCOUNT, key: str = "messaging") -> dict:
    return {"object": "instagram", "entry": [{"id": account, "time": T0, key: [item]} for item in items]}


def message(mid: str, text: str | None = "hello", *, customer: str = CUSTOMER, account: str = ACCOUNT,
            ts: int = T0, echo: bool = False, **fields) -> dict:
    body: dict[str, Any] = {"mid": mid, **fields}
    if text is not None:
        body["text"] = text
    if echo:
        body["is_echo"] = True
        sender, recipient = account, customer
    else:
        sender, recipient = customer, account
    return {"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": ts, "message": body}


def reaction(mid: str, action: str = "react", *, customer: str = CUSTOMER, account: str = ACCOUNT, ts: int = T0,
             reaction: str = "love", emoji: str = "\u2764\ufe0f") -> dict:
    body = {"mid": mid, "action": action}
    if action == "react":
        body.update(reaction=reaction, emoji=emoji)
    return {"sender": {"id": customer}, "recipient": {"id": account}, "timestamp": ts, "reaction": body}


def seen(mid: str, *, customer: str = CUSTOMER, account: str = ACCOUNT, ts: int = T0) -> dict:
    return {"sender": {"id": customer}, "recipient": {"id": account}, "timestamp": ts, "read": {"mid": mid}}


def edit(mid: str, text: str, num_edit: int, *, customer: str | None = CUSTOMER, account: str = ACCOUNT,
         ts: int = T0) -> dict:
    item: dict[str, Any] = {"timestamp": ts, "message_edit": {"mid": mid, "text": text, "num_edit": num_edit}}
    if customer is not None:
        item.update(sender={"id": customer}, recipient={"id": account})
    return item


def unsend(mid: str, *, customer: str = CUSTOMER, account: str = ACCOUNT, ts: int = T0, echo: bool = False) -> dict:
    item = message(mid, None, customer=customer, account=account, ts=ts, echo=echo)
    item["message"]["is_deleted"] = True
    return item


# --- The `changes` style: comments and mentions (entry.time in seconds) -----------------

MEDIA = "18000000000000001"  # a post of the fixtures' shop


def comment(comment_id: str, text: str | None = "How much?", *, customer: str | None = CUSTOMER,
            username: str | None = "anna.b", media: str | dict | None = MEDIA, parent: str | None = None,
            field: str = "comments", own: bool = False, account: str = ACCOUNT, **value) -> dict:
    """One changes[] item: a comment on `media` (own: the business wrote it, as Meta marks it)."""
    body: dict[str, Any] = {"id": comment_id, **value}
    if text is not None:
        body["text"] = text
    author: dict[str, Any] = {}
    if own:
        author = {"id": account, "username": "shop", "self_ig_scoped_id": "5550000000000001"}
    elif customer is not None:
        author = {"id": customer, **({"username": username} if username else {})}
    if author:
        body["from"] = author
    if isinstance(media, dict):
        body["media"] = media
    elif media is not None:
        body["media"] = {"id": media, "media_product_type": "FEED"}
    if parent is not None:
        body["parent_id"] = parent
    return {"field": field, "value": body}


def changes(*items: dict, account: str = ACCOUNT, time_s: int = T0 // 1000) -> dict:
    """A delivery of changes[] items in one entry, with Meta's time in seconds."""
    return {"object": "instagram", "entry": [{"id": account, "time": time_s, "changes": list(items)}]}


# --- Receiving ---------------------------------------------------------------------------

class Receiver:
    """A tiny WSGI webhook receiver that trusts nothing it has not checked itself."""

    def __init__(self, secret: str, verify_token: str) -> None:
        self.secret = secret.encode()
        self.verify_token = verify_token
        self.posts: list[dict] = []
        self.answers: deque[int] = deque()  # statuses to answer next (then 200)
        self.on_post = None
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "GET":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            if query.get("hub.mode") == ["subscribe"] and query.get("hub.verify_token") == [self.verify_token]:
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [query["hub.challenge"][0].encode()]
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"wrong verify token"]
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        sha256 = "sha256=" + hmac.new(self.secret, raw, hashlib.sha256).hexdigest()
        sha1 = "sha1=" + hmac.new(self.secret, raw, hashlib.sha1).hexdigest()
        valid = (hmac.compare_digest(sha256, environ.get("HTTP_X_HUB_SIGNATURE_256", ""))
                 and hmac.compare_digest(sha1, environ.get("HTTP_X_HUB_SIGNATURE", "")))
        with self._lock:
            status = self.answers.popleft() if self.answers else (200 if valid else 403)
            self.posts.append({"raw": raw, "valid": valid, "status": status,
                               "content_type": environ.get("CONTENT_TYPE")})
        if self.on_post:
            self.on_post(raw)
        start_response(f"{status} X", [("Content-Type", "text/plain")])
        return [b"EVENT_RECEIVED" if status == 200 else b"no"]

    def payloads(self) -> list[dict]:
        return [json.loads(p["raw"]) for p in self.posts]

    def events(self) -> list[dict]:
        return [e for p in self.payloads() for entry in p["entry"] for e in entry["messaging"]]
