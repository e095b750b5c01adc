"""The control API over HTTP (`/_sim/...`): the Python control surface for other processes.

The demo and benchmarks drive a standalone simulator through it; tests in the same
process use the Python objects directly.
"""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, current_app, jsonify, request

from .control import ACTIONS
from .webhooks import WebhookRefused

bp = Blueprint("control", __name__, url_prefix="/_sim")


def _sim():
    return current_app.extensions["sim"]


def _body() -> dict:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _account_json(handle) -> dict:
    s = handle.state
    return {"ig_user_id": s.ig_user_id, "username": s.username, "name": s.name, "page_id": s.page_id,
            "token": s.token, "token_expires_at": s.token_expires_at,
            "subscribed_fields": sorted(s.subscribed_fields)}


def _customer_json(handle) -> dict:
    s = handle.state
    return {"igsid": s.igsid, "account_id": s.account_id, "username": s.username, "name": s.name,
            "has_written": s.has_written, "available": s.available}


def _delivery_json(delivery) -> dict | None:
    if delivery is None:
        return None
    return {"id": delivery.id, "state": delivery.state, "reason": delivery.reason, "status": delivery.status,
            "response": delivery.response, "attempts": len(delivery.attempts), "duplicate_of": delivery.duplicate_of,
            "payload": delivery.payload}


@bp.errorhandler(KeyError)
@bp.errorhandler(ValueError)
@bp.errorhandler(TypeError)
def bad_request(exc):
    return jsonify({"error": str(exc)}), 400


@bp.errorhandler(WebhookRefused)
def refused(exc):
    return jsonify({"error": f"webhook refused: {exc}"}), 409


@bp.get("/state")
def state():
    """A summary of the world."""
    sim = _sim()
    world = sim.world
    with world.lock:
        return jsonify({
            "url": sim.url,
            "webhooks": {"callback_url": sim.settings.callback_url, "verified": sim.webhooks.verified},
            "accounts": [_account_json(sim.account(a)) for a in world.accounts],
            "customers": [_customer_json(sim.customer(c)) for c in world.customers],
            "conversations": len(world.conversations),
            "messages": len(world.messages),
            "comments": len(world.comments),
        })


@bp.route("/settings", methods=["GET", "PATCH"])
def settings():
    """Read or change settings, limits and faults."""
    sim = _sim()
    if request.method == "PATCH":
        sim.settings.update(_body())
    return jsonify(sim.settings.to_dict())


@bp.post("/accounts")
def add_account():
    """Create an account; answers its ids and token."""
    body = _body()
    handle = _sim().add_account(body.pop("username", "shop"), **body)
    return jsonify(_account_json(handle)), 201


@bp.post("/accounts/<ig_user_id>/customers")
def add_customer(ig_user_id: str):
    """Create a customer of an account."""
    body = _body()
    handle = _sim().account(ig_user_id).add_customer(body.pop("username"), **body)
    return jsonify(_customer_json(handle)), 201


@bp.post("/accounts/<ig_user_id>/posts")
def add_post(ig_user_id: str):
    """Create a post the account owns."""
    media = _sim().account(ig_user_id).add_post(**_body())
    return jsonify({"id": media.id, "caption": media.caption, "permalink": media.permalink}), 201


@bp.post("/foreign_posts")
def add_foreign_post():
    """Create a post of another account."""
    media = _sim().add_foreign_post(**_body())
    return jsonify({"id": media.id, "caption": media.caption, "permalink": media.permalink}), 201


@bp.post("/accounts/<ig_user_id>/token")
def token(ig_user_id: str):
    """{"action": "expire" | "revoke"}."""
    handle = _sim().account(ig_user_id)
    action = _body().get("action")
    if action == "expire":
        handle.expire_token()
    elif action == "revoke":
        handle.revoke_token()
    else:
        raise ValueError('action is "expire" or "revoke"')
    return jsonify(_account_json(handle))


@bp.post("/accounts/<ig_user_id>/app_messages")
def app_message(ig_user_id: str):
    """The owner types a message in the Instagram app: {"igsid", "text"}."""
    sim = _sim()
    body = _body()
    sent = sim.account(ig_user_id).types_in_app(sim.customer(body["igsid"]), body["text"])
    return jsonify({"mid": sent.mid, "event": sent.event, "delivery": _delivery_json(sent.delivery)}), 201


@bp.post("/customers/<igsid>/actions")
def customer_action(igsid: str):
    """Run one customer action: {"action": "sends_text", "text": "hi"} (names in control.ACTIONS)."""
    sim = _sim()
    params = _body()
    name = params.pop("action", None)
    if name not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(sorted(ACTIONS))}")
    for key in ("media_id", "post_media_id"):
        if key in params:
            params["media" if key == "media_id" else "post"] = sim.world.media[params.pop(key)]
    sent = getattr(sim.customer(igsid), name)(**params)
    return jsonify({"mid": sent.mid, "event": sent.event, "delivery": _delivery_json(sent.delivery)}), 201


@bp.get("/customers/<igsid>/received")
def received(igsid: str):
    """What the business sent this customer."""
    return jsonify([asdict(r) for r in _sim().customer(igsid).received])


@bp.post("/webhooks")
def webhooks():
    """Set the callback URL / verify token / secret and run the handshake."""
    body = _body()
    result = _sim().connect_webhooks(body.get("callback_url"), verify_token=body.get("verify_token"),
                                     app_secret=body.get("app_secret"))
    return jsonify(asdict(result)), 200 if result.ok else 502


@bp.get("/webhooks/deliveries")
def deliveries():
    """The latest deliveries (limit, default 50)."""
    limit = request.args.get("limit", 50, type=int)
    return jsonify([_delivery_json(d) for d in _sim().deliveries[-limit:]])


@bp.post("/clock")
def clock():
    """Move the clock: {"seconds": n}."""
    sim = _sim()
    sim.advance(float(_body().get("seconds", 0)))
    return jsonify({"now": sim.clock.now()})


@bp.post("/failures")
def failures():
    """Inject Graph errors: {"endpoint", "code", "subcode", "times", "http_status", "message"}."""
    body = _body()
    _sim().fail_next(body.pop("endpoint"), int(body.pop("code")), body.pop("subcode", None), **body)
    return jsonify({"ok": True}), 201


@bp.get("/calls")
def calls():
    """Graph calls seen (limit, default 100)."""
    limit = request.args.get("limit", 100, type=int)
    return jsonify([asdict(c) for c in _sim().calls[-limit:]])
