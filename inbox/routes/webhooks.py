"""Meta's webhook: the verification handshake and signed event deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

from flask import Blueprint, Response, current_app, request

from .. import metrics
from ..extensions import csrf
from ..services.applier import wake
from ..services.deliveries import StorageUnavailable, receive_delivery, store_delivery

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
# Meta signs its POSTs; it cannot send our CSRF token.
csrf.exempt(bp)

_MAX_CHALLENGE = 256


@bp.get("/instagram")
def verify():
    """Answer the subscription handshake with the challenge when the verify token matches."""
    mode = request.args.get("hub.mode", "")
    token = request.args.get("hub.verify_token", "")
    challenge = request.args.get("hub.challenge", "")
    expected = current_app.config.get("META_VERIFY_TOKEN") or ""
    if mode != "subscribe" or not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        log.warning("webhook handshake refused from %s (mode %r)", request.remote_addr, mode[:20])
        return "verify token mismatch", 403, {"Content-Type": "text/plain; charset=utf-8"}
    if not challenge or len(challenge) > _MAX_CHALLENGE or not challenge.isprintable():
        return "missing or invalid hub.challenge", 400, {"Content-Type": "text/plain; charset=utf-8"}
    # Plain text, never sniffed as HTML: the challenge is echoed as given.
    return challenge, 200, {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}


@bp.post("/instagram")
def receive():
    """Check the signature over the raw bytes, store the delivery, wake the applier, answer 200.

    Production traffic never reaches this view: `Acknowledge` answers the same POST before
    Flask's request machinery. It serves WEBHOOK_APPLY_INLINE (tests), where the delivery is
    applied before the answer, through the applier's code.
    """
    status, text, headers = acknowledge(request.stream, request.content_length, request.headers.get(
        "X-Hub-Signature-256", ""), request.remote_addr)
    return Response(text, status=status, headers=headers, mimetype="application/json")


class Acknowledge:
    """WSGI middleware: `POST /webhooks/instagram` answered without Flask's request machinery.

    No session, no login manager, no CSRF, no request hooks: size check, HMAC, one INSERT,
    wake the applier, 200 (`acknowledge`). Every other request goes to the app.
    """

    def __init__(self, wsgi_app, app) -> None:
        self.wsgi_app = wsgi_app
        self.app = app

    def __call__(self, environ, start_response):
        if (environ.get("PATH_INFO") != "/webhooks/instagram" or environ.get("REQUEST_METHOD") != "POST"
                or self.app.config["WEBHOOK_APPLY_INLINE"]):
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        try:
            length = int(environ.get("CONTENT_LENGTH") or "") if environ.get("CONTENT_LENGTH") else None
        except ValueError:
            length = None
        with self.app.app_context():
            status, text, headers = acknowledge(environ["wsgi.input"], length,
                                                environ.get("HTTP_X_HUB_SIGNATURE_256", ""),
                                                environ.get("REMOTE_ADDR"))
        metrics.http_request("webhooks.receive", "POST", status, time.perf_counter() - started)
        data = text.encode()
        start_response(f"{status} {_REASONS[status]}", [("Content-Type", "application/json"),
                                                        ("Content-Length", str(len(data))), *headers.items()])
        return [data]


_REASONS = {200: "OK", 403: "FORBIDDEN", 413: "REQUEST ENTITY TOO LARGE", 503: "SERVICE UNAVAILABLE"}


def acknowledge(stream, content_length: int | None, header: str, remote_addr: str | None
                ) -> tuple[int, str, dict[str, str]]:
    """The whole acknowledgement: (HTTP status, JSON text, extra headers). Needs an app context.

    A signed body over WEBHOOK_MAX_BYTES is stored as "failed" for a person; one over
    MAX_CONTENT_LENGTH is refused unread. A database outage answers 503 with Retry-After,
    so Meta retries and nothing is lost.
    """
    config = current_app.config
    hard_limit = config["MAX_CONTENT_LENGTH"]
    if content_length is not None and content_length > hard_limit:
        log.warning("webhook refused: %d bytes is over the %d-byte limit", content_length, hard_limit)
        return 413, '{"error":"payload too large"}', {}
    body = stream.read(hard_limit + 1) if content_length is None else stream.read(content_length)
    if len(body) > hard_limit:
        log.warning("webhook refused: body over the %d-byte limit", hard_limit)
        return 413, '{"error":"payload too large"}', {}
    signature = verified_signature(body, header)
    if signature is None:
        log.warning("webhook refused: %s signature from %s (%d bytes)", "bad" if header else "missing", remote_addr,
                    len(body))
        return 403, '{"error":"invalid signature"}', {}
    limit = config["WEBHOOK_MAX_BYTES"]
    try:
        if len(body) > limit:
            # Stored, never dropped: Meta would retry it to no end; a person can look at it and replay it.
            error = (f"body of {len(body)} bytes is over the {limit}-byte limit (WEBHOOK_MAX_BYTES, sized from "
                     "Meta's maxima); not applied: replay it from the deliveries page if it is genuine")
            delivery_id = store_delivery(body, signature, status="failed", error=error)
            log.warning("webhook delivery %d stored as failed: %d bytes is over the limit", delivery_id, len(body))
            return 200, f'{{"status":"failed","delivery_id":{delivery_id}}}', {}
        if config["WEBHOOK_APPLY_INLINE"]:
            result = receive_delivery(body, signature)
            return 200, json.dumps({"status": result.status, "delivery_id": result.delivery_id,
                                    "events": len(result.outcomes)}), {}
        delivery_id = store_delivery(body, signature)
    except StorageUnavailable:
        log.exception("webhook delivery not stored: the database is unavailable")
        return 503, '{"error":"temporarily unavailable"}', {"Retry-After": "10"}
    wake()
    return 200, f'{{"status":"received","delivery_id":{delivery_id}}}', {}


def verified_signature(body: bytes, header: str) -> str | None:
    """The signature ("sha256=<hex>") when it is HMAC-SHA256 of the raw body under either configured app secret."""
    if not header.startswith("sha256="):
        return None
    given = header[len("sha256="):].strip().lower().encode()
    secrets = [current_app.config.get(name) for name in ("META_APP_SECRET", "META_INSTAGRAM_APP_SECRET")]
    valid = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
        # Check every secret, so the time taken does not say which one matched.
        valid |= hmac.compare_digest(expected, given)
    return "sha256=" + given.decode() if valid else None
