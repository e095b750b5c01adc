"""Meta's callbacks about people who removed the app: data deletion and deauthorize.

Both carry a `signed_request` form field: `<signature>.<payload>`, base64url without
padding; the signature is HMAC-SHA256 of the encoded payload with the app secret, and the
payload is JSON with `algorithm`, `issued_at` and `user_id` (app-scoped).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..live.publish import publish_after_commit
from ..models import Account, Erasure
from . import erasure

log = logging.getLogger(__name__)


class BadSignedRequest(ValueError):
    """The signed_request is malformed, not signed with our app secret, or too old."""


@dataclass(frozen=True)
class SignedRequest:
    user_id: str
    issued_at: int


def _b64decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise BadSignedRequest("not base64url") from None


def parse_signed_request(raw: str, secrets: list[str], *, max_age: float, now: float | None = None) -> SignedRequest:
    """Verify a signed_request with any of the app secrets and return who it is about."""
    if not raw or raw.count(".") != 1 or len(raw) > 8192:
        raise BadSignedRequest("malformed")
    encoded_signature, encoded_payload = raw.split(".")
    signature = _b64decode(encoded_signature)
    valid = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), encoded_payload.encode(), hashlib.sha256).digest()
        valid |= hmac.compare_digest(expected, signature)  # every secret checked: no timing hint
    if not secrets or not valid:
        raise BadSignedRequest("bad signature")
    try:
        payload = json.loads(_b64decode(encoded_payload))
    except ValueError:
        raise BadSignedRequest("payload is not JSON") from None
    if not isinstance(payload, dict) or str(payload.get("algorithm", "")).upper() != "HMAC-SHA256":
        raise BadSignedRequest("unexpected algorithm")
    user_id, issued_at = payload.get("user_id"), payload.get("issued_at")
    if not isinstance(issued_at, int) or not user_id or not str(user_id).isascii():
        raise BadSignedRequest("no user_id or issued_at")
    now = time.time() if now is None else now
    if issued_at > now + 300 or now - issued_at > max_age:
        raise BadSignedRequest("expired")
    return SignedRequest(str(user_id), issued_at)


def verify(raw: str) -> SignedRequest:
    """parse_signed_request with this app's secrets and age limit."""
    cfg = current_app.config
    secrets = [s for s in (cfg.get("META_APP_SECRET"), cfg.get("META_INSTAGRAM_APP_SECRET")) if s]
    return parse_signed_request(raw, secrets, max_age=float(cfg["SIGNED_REQUEST_MAX_AGE_SECONDS"]))


def request_data_deletion(raw: str) -> Erasure:
    """A verified data-deletion request: the account's erasure is queued; returns its audit row."""
    return erasure.request_account_erasure(verify(raw).user_id)


def deauthorize(raw: str) -> int | None:
    """The person removed the app: their account stops (disconnected) and its token is dropped."""
    request = verify(raw)
    account = db.session.scalar(select(Account).where(
        (Account.app_user_id == request.user_id) | (Account.ig_user_id == request.user_id)))
    if account is None:
        return None
    account.status = "disconnected"
    account.status_reason = "The owner removed the inbox's access on Instagram; connect the account again to resume."
    account.access_token_encrypted, account.token_expires_at = None, None
    publish_after_commit(account.id, "account.updated")
    db.session.commit()
    log.info("account %s deauthorized on Instagram: disconnected, token dropped", account.id)
    return account.id
