"""Replies over HTTP and the /live websocket: login, account isolation, one render per process,
fan-out across processes through Redis, 1012 on shutdown."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
import websocket
from sqlalchemy import select, update

from inbox.extensions import db, get_redis
from inbox.models import Account, Conversation, Message, utcnow
from inbox.live import publish
from tests.support.clients import logged_in_client
from tests.support.live import LiveSocket, drain, session_cookie
from tests.support.waiting import wait_until
from tests.support.servers import GunicornServer


@pytest.fixture
def alice(sim_webhooks, connected):
    """A customer who wrote to the shop through a real webhook."""
    alice = connected.ig.add_customer("alice", name="Alice")
    assert alice.sends_text("Hello there").delivery.status == 200
    return alice


@pytest.fixture
def agent(factory, connected, auth):
    """An agent of the connected shop, logged in on `client`."""
    user = factory.staff_on(connected.account, "agent")
    auth.login(user)
    return user


def the_conversation(app) -> int:
    with app.app_context():
        return db.session.scalar(select(Conversation.id))


def hx(**headers):
    return {"HX-Request": "true", **headers}


# --- The reply route ---------------------------------------------------------------------------

def test_reply_answers_the_pending_bubble_and_a_fresh_composer(app, client, connected, alice, agent, run_jobs):
    conversation_id = the_conversation(app)
    url = f"/accounts/{connected.account.id}/conversations/{conversation_id}/reply"
    token = uuid.uuid4().hex
    response = client.post(url, data={"text": "We have it <b>in blue</b>", "client_token": token}, headers=hx())
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    with app.app_context():
        message = db.session.scalar(select(Message).where(Message.direction == "out"))
        assert message.status == "pending" and message.sent_by_user_id == agent.id
    assert f"""hx-swap-oob='beforeend:#thread[data-conversation-id="{conversation_id}"] #messages'""" in html
    assert f'id="message-{message.id}"' in html
    assert "We have it &lt;b&gt;in blue&lt;/b&gt;" in html  # escaped
    assert 'id="composer"' in html and token not in html  # the new composer has a new token

    again = client.post(url, data={"text": "We have it <b>in blue</b>", "client_token": token}, headers=hx())
    assert again.status_code == 200 and f'id="message-{message.id}"' in again.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Message).where(Message.direction == "out")) == 1
    run_jobs()
    assert alice.received_texts == ["We have it <b>in blue</b>"]


def test_a_refused_reply_keeps_the_draft_and_says_why(app, client, connected, alice, agent):
    with app.app_context():
        db.session.execute(update(Conversation).values(last_customer_message_at=utcnow() - timedelta(hours=25)))
        db.session.commit()
    url = f"/accounts/{connected.account.id}/conversations/{the_conversation(app)}/reply"
    response = client.post(url, data={"text": "Still there?", "client_token": uuid.uuid4().hex}, headers=hx())
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="composer"' in html and 'hx-swap-oob="true"' in html
    assert "within 24 hours" in html and "disabled" in html
    with app.app_context():
        assert db.session.scalar(select(Message).where(Message.direction == "out")) is None


def test_reply_without_csrf_is_refused(app, connected, alice, agent, client):
    url = f"/accounts/{connected.account.id}/conversations/{the_conversation(app)}/reply"
    response = client.post(url, data={"text": "hi", "client_token": uuid.uuid4().hex}, headers=hx(), csrf=False)
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(Message).where(Message.direction == "out")) is None


def test_retry_requeues_a_failed_reply(app, client, connected, alice, agent, run_jobs, sim):
    sim.fail_next("send", 551)
    url = f"/accounts/{connected.account.id}/conversations/{the_conversation(app)}/reply"
    client.post(url, data={"text": "Try this", "client_token": uuid.uuid4().hex}, headers=hx())
    run_jobs()
    with app.app_context():
        message = db.session.scalar(select(Message).where(Message.direction == "out"))
        assert message.status == "failed"
    response = client.post(f"/accounts/{connected.account.id}/messages/{message.id}/retry", headers=hx())
    assert response.status_code == 200 and f'id="message-{message.id}"' in response.get_data(as_text=True)
    run_jobs()
    assert alice.received_texts == ["Try this"]


def test_a_refused_retry_keeps_the_failed_bubble_and_says_why(app, client, connected, alice, agent, run_jobs, sim):
    sim.fail_next("send", 551)
    url = f"/accounts/{connected.account.id}/conversations/{the_conversation(app)}/reply"
    client.post(url, data={"text": "Try this", "client_token": uuid.uuid4().hex}, headers=hx())
    run_jobs()
    with app.app_context():
        message_id = db.session.scalar(select(Message.id).where(Message.direction == "out"))
        db.session.execute(update(Conversation).values(last_customer_message_at=utcnow() - timedelta(hours=25)))
        db.session.commit()
    response = client.post(f"/accounts/{connected.account.id}/messages/{message_id}/retry", headers=hx())
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and f'id="message-{message_id}"' in html
    assert "msg-failed" in html and "only allows replies within 24 hours" in html
    run_jobs()
    assert alice.received_texts == []


# --- The websocket in one process -----------------------------------------------------------

def test_a_socket_without_a_login_is_refused(live_server, factory):
    factory.user()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        LiveSocket(live_server.url, None)
    assert refused.value.status_code == 401


def test_a_socket_from_another_site_is_refused(live_server, client, auth, factory):
    auth.login()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        LiveSocket(live_server.url, session_cookie(client), origin="https://evil.example")
    assert refused.value.status_code == 403


def test_a_socket_for_an_account_one_does_not_belong_to_is_refused(live_server, client, auth, factory):
    theirs = factory.account()
    auth.login()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        LiveSocket(live_server.url, session_cookie(client), account=theirs.id)
    assert refused.value.status_code == 404


def test_events_reach_members_only_and_render_once_per_process(app, live_server, connected, alice, agent, factory, sim):
    other_account = factory.account(username="elsewhere")
    outsider = factory.staff_on(other_account, "admin")
    member_sockets = [LiveSocket(live_server.url, session_cookie(logged_in_client(app, agent)),
                                 account=connected.account.id) for _ in range(3)]
    outsider_socket = LiveSocket(live_server.url, session_cookie(logged_in_client(app, outsider)))
    try:
        for s in [*member_sockets, outsider_socket]:
            s.wait_for('id="live-state"')  # subscribed
        hub = app.extensions["inbox_live_hub"]
        rendered = hub.frames_rendered
        sent = alice.sends_text("Is it <script>alert(1)</script> waterproof?")
        assert sent.delivery.status == 200
        for s in member_sockets:
            frame = s.wait_for("waterproof")
            assert "&lt;script&gt;" in frame and "<script>" not in frame
            assert re.search(r"""hx-swap-oob='beforeend:#thread\[data-conversation-id="\d+"\] #messages'""", frame)
        # Rendered once for the three sockets: one frame per batch of events (at most one per event).
        assert wait_until(lambda: hub.frames_rendered - rendered >= 1)
        assert hub.frames_rendered - rendered <= 2
        # The outsider's next frame is its own account's event: nothing of the shop came before it.
        with app.app_context():
            publish.publish(other_account.id, "account.updated")
        frame = outsider_socket.wait_for("account-banners")
        assert "waterproof" not in frame
    finally:
        for s in [*member_sockets, outsider_socket]:
            s.close()


def test_a_watched_accounts_frame_is_rendered_once_by_the_writer_and_forwarded(app, live_server, connected, alice,
                                                                                agent):
    """Render once: the process that wrote (here the webhook's request) renders; hubs forward bytes."""
    redis_client = get_redis(app)
    watched = lambda: int(redis_client.hget(publish.watched_key(app), connected.account.id) or 0)
    with app.app_context():
        pubsub = redis_client.pubsub()
        pubsub.subscribe(publish.channel(connected.account.id))
    s = LiveSocket(live_server.url, session_cookie(logged_in_client(app, agent)), account=connected.account.id)
    try:
        s.wait_for('id="live-state"')
        assert watched() == 1
        hub = app.extensions["inbox_live_hub"]
        rendered_here = hub.frames_rendered
        assert alice.sends_text("Does it come in navy?").delivery.status == 200
        frame = s.wait_for("Does it come in navy?")
        assert "#messages" in frame
        events = drain(pubsub)
        framed = [e for e in events if e.get("framed")]
        [written] = [e for e in events if e["type"] == "frame"]
        assert {e["type"] for e in framed} >= {"message.created", "conversation.updated"}
        assert "Does it come in navy?" in written["html"] and 'id="unread-total"' in written["html"]
        assert hub.frames_rendered - rendered_here >= 1  # frames forwarded count as sent, none rendered twice
    finally:
        s.close()
    wait_until(lambda: watched() == 0, what="the closed socket counted out")
    # Nobody watching: events go out alone, without a frame rendered for nobody.
    with app.app_context():
        pubsub = redis_client.pubsub()
        pubsub.subscribe(publish.channel(connected.account.id))
    assert alice.sends_text("Hello again").delivery.status == 200
    events = drain(pubsub)
    assert events and not [e for e in events if e["type"] == "frame" or e.get("framed")]


def test_message_updated_and_removed_bubbles_are_swapped_by_id(app, live_server, connected, alice, agent):
    s = LiveSocket(live_server.url, session_cookie(logged_in_client(app, agent)), account=connected.account.id)
    try:
        s.wait_for('id="live-state"')
        with app.app_context():
            message = db.session.scalar(select(Message))
            publish.publish(connected.account.id, "message.updated", conversation_id=message.conversation_id,
                             message_id=message.id)
            publish.publish(connected.account.id, "conversation.updated", conversation_id=message.conversation_id,
                             removed_message_id=999)
        frames = s.wait_for(f'id="message-{message.id}"')
        if 'id="message-999"' not in frames:  # the two events may come in one frame or two
            frames += s.wait_for('id="message-999"')
        tag = re.search(rf'<div[^>]*id="message-{message.id}"[^>]*>', frames).group(0)
        assert 'hx-swap-oob="true"' in tag  # replaced in place
        assert '<div id="message-999" hx-swap-oob="delete"></div>' in frames and 'data-unread="1"' in frames
    finally:
        s.close()


def test_account_updated_pushes_the_reconnect_banner(app, live_server, connected, alice, agent):
    s = LiveSocket(live_server.url, session_cookie(logged_in_client(app, agent)), account=connected.account.id)
    try:
        s.wait_for('id="live-state"')
        with app.app_context():
            from inbox.services.accounts import mark_reconnect_needed

            mark_reconnect_needed(connected.account.id, "token revoked")
        frame = s.wait_for("account-banners")
        assert "Reconnect needed" in frame and "token revoked" in frame
    finally:
        s.close()


def test_shutdown_closes_sockets_with_1012(app, live_server, connected, alice, agent):
    s = LiveSocket(live_server.url, session_cookie(logged_in_client(app, agent)), account=connected.account.id)
    s.wait_for('id="live-state"')
    app.extensions["inbox_shutdown"]()
    assert s.wait_closed() == 1012
    # The same server serves again: a new socket is live.
    again = LiveSocket(live_server.url, session_cookie(logged_in_client(app, agent)), account=connected.account.id)
    try:
        again.wait_for('id="live-state"')
    finally:
        again.close()


def test_a_revoked_membership_ends_the_socket(app, live_server, connected, alice, agent, monkeypatch):
    from inbox.routes import live
    from inbox.services import staff

    monkeypatch.setattr(live, "MEMBERSHIP_CHECK_SECONDS", 0.2)
    s = LiveSocket(live_server.url, session_cookie(logged_in_client(app, agent)), account=connected.account.id)
    s.wait_for('id="live-state"')
    with app.app_context():
        staff.revoke(agent.id, connected.account.id)
    assert s.wait_closed() == 1008


# --- Two web processes on one Redis -------------------------------------------------------------

def test_a_webhook_received_by_one_process_reaches_a_socket_on_the_other(app, app_config, sim, connected,
                                                                          factory, tmp_path, running_applier):
    alice = connected.ig.add_customer("alice", name="Alice")
    agent = factory.staff_on(connected.account, "agent")
    other_account = factory.account(username="elsewhere")
    outsider = factory.staff_on(other_account, "admin")
    first = GunicornServer(app_config, tmp_path / "one").start()
    second = GunicornServer(app_config, tmp_path / "two").start()
    try:
        from tests.support.sim import wire_webhooks

        wire_webhooks(sim, first.url)  # Meta posts to the first process
        member = LiveSocket(second.url, session_cookie(logged_in_client(app, agent)), account=connected.account.id)
        outsider_socket = LiveSocket(second.url, session_cookie(logged_in_client(app, outsider)))
        try:
            member.wait_for('id="live-state"', timeout=20)
            outsider_socket.wait_for('id="live-state"', timeout=20)
        except AssertionError:
            raise AssertionError(second.log_text()[-3000:]) from None

        assert alice.sends_text("Do you ship to Lyon?").delivery.status == 200
        frame = member.wait_for("Do you ship to Lyon?")
        assert "#messages" in frame
        if 'id="unread-total"' not in frame:  # conversation.updated: in the same frame or the next
            member.wait_for('id="unread-total"')

        with app.app_context():
            publish.publish(other_account.id, "account.updated")
        assert "Lyon" not in outsider_socket.wait_for("account-banners")

        # A deploy stops the second process: its sockets are told to reconnect (1012).
        second.stop()
        assert member.wait_closed() == 1012
    finally:
        first.stop()
        second.stop()


def test_an_ambiguous_send_shows_waiting_for_instagram(app, live_server, connected, alice, agent, run_jobs, sim,
                                                       client):
    s = LiveSocket(live_server.url, session_cookie(logged_in_client(app, agent)), account=connected.account.id)
    try:
        s.wait_for('id="live-state"')
        sim.faults.send_ambiguous = 1
        connected.ig.unsubscribe()  # and its echo never comes
        url = f"/accounts/{connected.account.id}/conversations/{the_conversation(app)}/reply"
        client.post(url, data={"text": "Did this arrive?", "client_token": uuid.uuid4().hex}, headers=hx())
        s.wait_for("Sending…")
        run_jobs()
        frame = s.wait_for("Waiting for Instagram")
        assert "Did this arrive?" in frame
    finally:
        s.close()


def test_reading_marks_the_open_conversation_read_for_everyone(app, client, connected, alice, agent, live_server):
    conversation_id = the_conversation(app)
    s = LiveSocket(live_server.url, session_cookie(logged_in_client(app, agent)), account=connected.account.id)
    try:
        s.wait_for('id="live-state"')
        response = client.post(f"/accounts/{connected.account.id}/conversations/{conversation_id}/read", headers=hx())
        assert response.status_code == 204
        frame = s.wait_for(f'id="conversation-{conversation_id}"')
        assert "unread-badge" not in frame
        with app.app_context():
            assert db.session.get(Conversation, conversation_id).unread_count == 0
    finally:
        s.close()


def test_a_transactions_events_go_out_after_commit_in_order_and_never_after_a_rollback(app, factory):
    from inbox.extensions import get_redis

    account = factory.account()
    with app.app_context():
        pubsub = get_redis(app).pubsub()
        pubsub.subscribe(publish.channel(account.id))
        pubsub.get_message(timeout=1)  # the subscribe confirmation

        db.session.execute(select(Account.id))  # a transaction that will roll back
        publish.publish_after_commit(account.id, "conversation.updated", conversation_id=1)
        db.session.rollback()  # dropped with its transaction
        db.session.execute(select(Account.id))
        for n in (2, 3, 4):
            publish.publish_after_commit(account.id, "conversation.updated", conversation_id=n)
        assert drain(pubsub, close=False) == []  # nothing before the commit
        db.session.commit()
        got = [event["conversation_id"] for event in drain(pubsub)]
    assert got == [2, 3, 4]


def test_services_that_publish_pull_in_no_web_code():
    # A worker imports every service; the hub, the frames and the routes are the web process's.
    probe = ("import importlib, pkgutil, sys, inbox.services as s\n"
             "for m in pkgutil.iter_modules(s.__path__): importlib.import_module('inbox.services.' + m.name)\n"
             "print(sorted(n for n in sys.modules if n.startswith(('inbox.live.', 'inbox.routes', 'inbox.templating'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['inbox.live.publish']"
