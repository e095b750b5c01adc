"""The /live websocket: live updates for the staff member's accounts, as htmx out-of-band swaps.

Login required (401); another site's Origin is refused (403); `?account=<id>` narrows it to one
account the user belongs to (404 otherwise), without it the socket hears all of them. The
socket holds no database connection; membership is checked again every
MEMBERSHIP_CHECK_SECONDS (revoked or signed out: 1008).

The page tells the socket what its person is doing, as JSON text frames
`{"presence": "view"|"leave"|"typing"|"idle", "account": A, "conversation": C}`: Redis keys with
a short TTL (services.presence), never a database write; an open socket also marks its person
online in its accounts (the round-robin's "online"). On shutdown the hub closes it with 1012
so the page reconnects and refetches. What each event pushes: inbox.live.frames.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, request
from flask_login import current_user

from .. import metrics
from ..auth import member_account_ids
from ..extensions import db, sock
from ..live import frames
from ..live.hub import SEND_TIMEOUT, Connection, get_hub
from ..models import StaffUser
from ..security import form_id
from ..services import presence

bp = Blueprint("live", __name__)

MEMBERSHIP_CHECK_SECONDS = 60  # an open socket re-reads its user's accounts this often
ONLINE_REFRESH_SECONDS = 20  # an open socket says its person is online this often
PRESENCE_MAX_FRAME = 200  # bytes: a presence signal is tiny; anything longer is dropped


@bp.before_request
def _check_socket():
    """Before the handshake: same origin, and the accounts this socket may hear."""
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        abort(403)  # another site's page must not ride on the staff member's cookie
    accounts = member_account_ids(current_user.id)
    wanted = form_id(request.args.get("account"), required=False)
    if wanted is not None:
        if wanted not in accounts:
            abort(404)
        accounts = {wanted}
    g.live_account_ids = accounts
    g.live_wanted = wanted


@sock.route("/live", bp=bp)
def socket(ws):
    """Live updates for the staff member's accounts, as htmx out-of-band swaps."""
    user_id, session_version, wanted = current_user.id, current_user.session_version, g.live_wanted
    connection = Connection(user_id, g.live_account_ids, send=ws.send)
    # The first frame says "subscribed" (the indicator turns live on it) and brings the count.
    hello = frames.hello_frame(wanted)
    db.session.remove()  # hold no database connection while the socket is open
    hub = get_hub(current_app._get_current_object())
    hub.add(connection)  # the listener is subscribed once this returns
    # A socket that cannot take a frame in time is dropped rather than holding the writer up.
    ws.sock.settimeout(SEND_TIMEOUT)
    ws.send(hello)
    connection.ready = True  # from here the hub's writer sends to it (one writer per process)
    next_check = time.monotonic() + MEMBERSHIP_CHECK_SECONDS
    next_online = 0.0
    viewing: set[tuple[int, int]] = set()
    metrics.socket_opened()
    try:
        while ws.connected and not connection.closed:
            connection.wake.wait(1.0)
            connection.wake.clear()
            while ws.connected and (said := ws.receive(timeout=0)) is not None:
                _presence_signal(said, user_id, connection.account_ids, viewing)
            if time.monotonic() >= next_online:
                next_online = time.monotonic() + ONLINE_REFRESH_SECONDS
                presence.mark_online(connection.account_ids, user_id)
            if time.monotonic() >= next_check and not connection.closed:
                next_check = time.monotonic() + MEMBERSHIP_CHECK_SECONDS
                accounts = _still_allowed(user_id, session_version, wanted)
                if not accounts:
                    connection.close(1008, "Signed out or no longer a member")
                elif accounts != connection.account_ids:
                    hub.resubscribe(connection, accounts)
        if connection.closed and ws.connected:
            ws.close(reason=connection.close_code, message=connection.close_reason)
    finally:
        connection.closed = True
        hub.remove(connection)
        metrics.socket_closed()
        for account_id, conversation_id in viewing:  # the page went away: it no longer views
            presence.signal(account_id, conversation_id, user_id, "leave")


def _presence_signal(said, user_id: int, account_ids, viewing: set) -> None:
    """A presence frame from the page; anything else (or for another account) is dropped."""
    if not isinstance(said, str) or len(said) > PRESENCE_MAX_FRAME:
        return
    try:
        data = json.loads(said)
        what, account_id, conversation_id = data["presence"], int(data["account"]), int(data["conversation"])
    except (ValueError, KeyError, TypeError):
        return
    if account_id not in account_ids or conversation_id <= 0 or what not in ("view", "leave", "typing", "idle"):
        return
    try:
        presence.signal(account_id, conversation_id, user_id, what)
    except Exception:  # Redis away: presence is best effort, the socket stays
        return
    if what == "leave":
        viewing.discard((account_id, conversation_id))
    else:
        viewing.add((account_id, conversation_id))


def _still_allowed(user_id: int, session_version: int, wanted: int | None) -> frozenset[int]:
    try:
        user = db.session.get(StaffUser, user_id)
        if user is None or not user.active or user.session_version != session_version:
            return frozenset()
        accounts = member_account_ids(user_id)
        return frozenset(accounts if wanted is None else accounts & {wanted})
    finally:
        db.session.remove()
