"""Meta's webhook: the verification handshake and signed event deliveries."""

from __future__ import annotations

import hashlib
import hmac
import logging

from flask import Blueprint, Response, current_app, request

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

    Nothing else happens here (no parsing, no session, no ORM): the applier in the worker
    applies it. A signed body over the size limit is stored as "failed" for a person.
    """
    hard_limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > hard_limit:
        log.warning("webhook refused: %d bytes is over the %d-byte limit", request.content_length, hard_limit)
        return _json('{"error":"payload too large"}', 413)
    body = request.stream.read(hard_limit + 1)
    if len(body) > hard_limit:
        log.warning("webhook refused: body over the %d-byte limit", hard_limit)
        return _json('{"error":"payload too large"}', 413)
    header = request.headers.get("X-Hub-Signature-256", "")
    signature = verified_signature(body, header)
    if signature is None:
        log.warning("webhook refused: %s signature from %s (%d bytes)",
                    "bad" if header else "missing", request.remote_addr, len(body))
        return _json('{"error":"invalid signature"}', 403)
    limit = current_app.config["WEBHOOK_MAX_BYTES"]
    inline = current_app.config["WEBHOOK_APPLY_INLINE"]
    try:
        if len(body) > limit:
            # Stored, never dropped: Meta would retry it to no end; a person can look at it and replay it.
            error = (f"body of {len(body)} bytes is over the {limit}-byte limit (WEBHOOK_MAX_BYTES, sized from "
                     "Meta's maxima); not applied: replay it from the deliveries page if it is genuine")
            delivery_id = store_delivery(body, signature, status="failed", error=error,
                                         attempts=current_app.config["WEBHOOK_AUTO_REPLAY_ATTEMPTS"])
            log.warning("webhook delivery %d stored as failed: %d bytes is over the limit", delivery_id, len(body))
            return _json(f'{{"status":"failed","delivery_id":{delivery_id}}}', 200)
        if inline:
            result = receive_delivery(body, signature)
            return {"status": result.status, "delivery_id": result.delivery_id, "events": len(result.outcomes)}, 200
        delivery_id = store_delivery(body, signature)
    except StorageUnavailable:
        log.exception("webhook delivery not stored: the database is unavailable")
        return _json('{"error":"temporarily unavailable"}', 503, {"Retry-After": "10"})
    wake()
    return _json(f'{{"status":"received","delivery_id":{delivery_id}}}', 200)


def _json(text: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """A small JSON answer made without jsonify (the acknowledgement path stays cheap)."""
    response = Response(text, status=status, mimetype="application/json")
    if headers:
        response.headers.update(headers)
    return response


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
