"""The team live over /live: assignment and notes reach the account's other browsers (and only
them), the assignee's notification names them, presence comes from the socket itself, and a
note never calls Instagram."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from sqlalchemy import select

from inbox.extensions import db, get_redis, rkey
from inbox.models import Conversation
from tests.support.clients import logged_in_client
from tests.support.live import LiveSocket, session_cookie


@pytest.fixture
def alice(sim_webhooks, connected):
    alice = connected.ig.add_customer("alice", name="Alice")
    assert alice.sends_text("Is the blue one in stock?").delivery.status == 200
    return alice


def heard(socket: LiveSocket, *needles: str, timeout: float = 10) -> str:
    """Every frame until all needles were heard (several may come in one frame)."""
    text, deadline = "", time.monotonic() + timeout
    while not all(n in text for n in needles):
        assert time.monotonic() < deadline, f"not heard: {[n for n in needles if n not in text]}"
        text += socket.next_frame(timeout=max(0.05, deadline - time.monotonic())) or ""
    return text


def the_conversation(app) -> int:
    with app.app_context():
        return db.session.scalar(select(Conversation.id))


def test_assignment_and_notes_are_pushed_and_a_note_never_calls_instagram(app, factory, connected, alice, live_server,
                                                                          sim, run_jobs):
    account = connected.account
    ana = factory.staff_on(account, "admin", name="Ana")
    ben = factory.staff_on(account, "agent", name="Ben")
    other = factory.account()
    outsider = factory.staff_on(other, "admin", name="Olga")
    cid = the_conversation(app)
    ana_client, ben_client = logged_in_client(app, ana), logged_in_client(app, ben)
    ben_socket = LiveSocket(live_server.url, session_cookie(ben_client), account=account.id)
    olga_socket = LiveSocket(live_server.url, session_cookie(logged_in_client(app, outsider)), account=other.id)
    try:
        ben_socket.wait_for('id="live-state"')
        olga_socket.wait_for('id="live-state"')
        sends_before = len(sim.calls_to("send"))
        response = ana_client.post(f"/accounts/{account.id}/c/{cid}/assign", data={"assignee": str(ben.id)},
                                   headers={"HX-Request": "true"})
        assert response.status_code == 200
        frame = heard(ben_socket, 'id="team-notify"', "Ana assigned this to Ben", f'id="thread-team-{cid}"')
        assert f'data-user-id="{ben.id}"' in frame and "Ana assigned you a conversation" in frame
        assert f'data-assignee-id="{ben.id}"' in frame  # the row and the thread bar follow
        ana_client.post(f"/accounts/{account.id}/conversations/{cid}/reply",
                        data={"mode": "note", "text": "@ben she asked twice", "client_token": uuid.uuid4().hex},
                        headers={"HX-Request": "true"})
        note_frame = heard(ben_socket, 'id="note-', 'data-kind="mention"')
        assert "she asked twice" in note_frame and 'class="mention">@ben' in note_frame
        assert "Ana mentioned you" in note_frame
        run_jobs()
        assert len(sim.calls_to("send")) == sends_before  # the note went nowhere near the Send API
        assert olga_socket.next_frame(timeout=1.0) is None  # another account's member hears nothing
    finally:
        ben_socket.close()
        olga_socket.close()


def test_presence_comes_from_the_socket_and_lives_in_redis_only(app, factory, connected, alice, live_server):
    account = connected.account
    ana = factory.staff_on(account, "admin", name="Ana")
    ben = factory.staff_on(account, "agent", name="Ben")
    cid = the_conversation(app)
    ana_socket = LiveSocket(live_server.url, session_cookie(logged_in_client(app, ana)), account=account.id)
    ben_socket = LiveSocket(live_server.url, session_cookie(logged_in_client(app, ben)), account=account.id)
    try:
        ana_socket.wait_for('id="live-state"')
        ben_socket.wait_for('id="live-state"')
        ana_socket.ws.send(json.dumps({"presence": "view", "account": account.id, "conversation": cid}))
        frame = ben_socket.wait_for(f'id="presence-{cid}"')
        assert f'data-user-id="{ana.id}"' in frame and "is viewing" in frame
        ana_socket.ws.send(json.dumps({"presence": "typing", "account": account.id, "conversation": cid}))
        assert "is typing" in ben_socket.wait_for("is typing")
        with app.app_context():
            keys = list(get_redis().scan_iter(match=rkey("typing", account.id, cid, "*")))
            assert len(keys) == 1 and 0 < get_redis().ttl(keys[0]) <= app.config["PRESENCE_TYPING_SECONDS"]
            assert get_redis().exists(rkey("online", account.id, ana.id))
        # A signal about another account is dropped.
        ana_socket.ws.send(json.dumps({"presence": "view", "account": account.id + 999, "conversation": cid}))
        ana_socket.close()  # the page went away: Ana no longer views it
        deadline = time.monotonic() + 10
        while True:
            frame = ben_socket.wait_for(f'id="presence-{cid}"')
            if f'data-user-id="{ana.id}"' not in frame:
                break
            assert time.monotonic() < deadline
    finally:
        ben_socket.close()
        ana_socket.close()
