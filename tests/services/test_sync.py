"""Resync from the Conversations API: against the simulator over HTTP, merged with what webhooks wrote."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Account, Attachment, Conversation, JobRun, Message, Reaction
from inbox.services import jobruns, sync
from tests.support.stored import count, identity_rows, job_run, self_rows
from tests.support.jobs import failed_jobs
from tests.support.processes import kill_with_children
from tests.support.waiting import wait_until

HTMX = {"HX-Request": "true"}
T0 = int(time.time()) - 6 * 3600  # whole seconds: the API's created_time has no milliseconds


@pytest.fixture
def app_config(app_config):
    app_config.update(SYNC_PAGE_SIZE=2, JOB_PROGRESS_INTERVAL_SECONDS=0, GRAPH_RETRY_BACKOFF_SECONDS=0.01)
    return app_config


def _text(response) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))).split())


def _resync(app, account_id: int, run_jobs) -> JobRun:
    with app.app_context():
        run, created = sync.start_resync(account_id)
        assert created
        run_id = run.id
    run_jobs()
    return job_run(app, run_id)


def _messages(app, account_id: int) -> dict[str, Message]:
    with app.app_context():
        rows = list(db.session.scalars(select(Message).where(Message.account_id == account_id)))
        for row in rows:
            for attachment in row.attachments:
                db.session.expunge(attachment)
            for reaction in row.reactions:
                db.session.expunge(reaction)
            db.session.expunge(row)
        return {row.mid: row for row in rows}


def _history(shop):
    """Alice's thread with every kind of message the API details; Bob says hello."""
    alice = shop.add_customer("alice", name="Alice")
    bob = shop.add_customer("bob_k", name="Bob")
    sent = {}
    sent["ask"] = alice.sends_text("Do you have it in blue?", at=T0, deliver=False)
    sent["app"] = shop.types_in_app(alice, "Yes, in blue and green!", at=T0 + 60, deliver=False)
    for i, kind in enumerate(("image", "video", "audio", "file")):
        sent[kind] = alice.sends_attachment(kind, at=T0 + 120 + i, deliver=False)
    sent["share"] = alice.sends_share(at=T0 + 180, deliver=False)
    sent["mention"] = alice.mentions_in_story(at=T0 + 240, deliver=False)
    sent["story_reply"] = alice.replies_to_story("Love this", at=T0 + 300, deliver=False)
    sent["inline"] = alice.replies_to(sent["ask"].mid, "about this one", at=T0 + 360, deliver=False)
    alice.reacts(sent["app"].mid, "love", deliver=False)
    sent["bob"] = bob.sends_text("hello", at=T0 + 30, deliver=False)
    return alice, bob, sent


def test_resync_brings_conversations_messages_and_usernames(app, sim, connected, run_jobs):
    account, shop = connected.account, connected.ig
    alice, bob, sent = _history(shop)

    run = _resync(app, account.id, run_jobs)

    assert run.state == "finished", run.error
    assert failed_jobs(app) == []
    s = run.summary
    assert (s["conversations"], s["created_conversations"], s["messages"], s["created_messages"]) == (2, 2, 11, 11)
    assert s["identities"] == 2 and s["failed"] == 0 and s["errors"] == []
    assert s["calls"] == 1 and len(sim.calls_to("conversations")) == 1  # one call: both threads and their messages
    with app.app_context():
        conversations = {c.customer_igsid: c for c in db.session.scalars(select(Conversation))}
        assert set(conversations) == {alice.igsid, bob.igsid}  # never the account itself
        thread = conversations[alice.igsid]
        assert thread.graph_conversation_id == shop.conversation_id(alice)
        assert thread.last_message_preview == "about this one"
        assert thread.last_message_direction == "in"
        assert thread.unread_count == 8  # everything Alice wrote since the owner's answer
    rows = _messages(app, account.id)
    assert len(rows) == 11
    ask, app_msg = rows[sent["ask"].mid], rows[sent["app"].mid]
    assert (ask.direction, ask.sender_kind, ask.sender_igsid, ask.text) == (
        "in", "customer", alice.igsid, "Do you have it in blue?")
    assert (app_msg.direction, app_msg.sender_kind, app_msg.sender_igsid, app_msg.status) == (
        "out", "instagram_app", account.ig_user_id, "sent")
    assert ask.meta_timestamp == T0 * 1000 and app_msg.meta_timestamp == (T0 + 60) * 1000
    for kind in ("image", "video", "audio", "file"):
        (attachment,) = rows[sent[kind].mid].attachments
        assert attachment.type == kind and attachment.source_url.startswith(sim.url) and attachment.raw
        assert rows[sent[kind].mid].text is None
    (share,) = rows[sent["share"].mid].attachments
    assert share.type == "share" and share.source_url
    (mention,) = rows[sent["mention"].mid].attachments
    assert mention.type == "story_mention" and mention.media_id and mention.source_url
    story_reply = rows[sent["story_reply"].mid]
    assert story_reply.reply_to_story_id and story_reply.reply_to_story_url and story_reply.text == "Love this"
    assert rows[sent["inline"].mid].reply_to_mid == sent["ask"].mid
    assert [(r.reactor_igsid, r.reaction) for r in app_msg.reactions] == [(alice.igsid, "love")]

    # Usernames from the participants list at once; names and pictures from the first-contact fetch it queued.
    people = identity_rows(app, account.id)
    assert {k: (v.username, v.name) for k, v in people.items()} == {
        alice.igsid: ("alice", "Alice"), bob.igsid: ("bob_k", "Bob")}
    assert len(sim.calls_to("profile")) == 2
    assert self_rows(app) == []


def test_a_second_resync_creates_nothing(app, sim, connected, run_jobs):
    account, shop = connected.account, connected.ig
    _history(shop)
    _resync(app, account.id, run_jobs)
    before = _messages(app, account.id)
    counts = [count(app, model) for model in (Conversation, Message, Attachment, Reaction)]

    again = _resync(app, account.id, run_jobs)

    assert again.state == "finished"
    s = again.summary
    assert (s["created_conversations"], s["created_messages"], s["identities"]) == (0, 0, 0)
    assert (s["conversations"], s["messages"]) == (2, 11)
    assert [count(app, model) for model in (Conversation, Message, Attachment, Reaction)] == counts
    after = _messages(app, account.id)
    assert {mid: row.id for mid, row in after.items()} == {mid: row.id for mid, row in before.items()}


def test_messages_webhooks_already_brought_stay_one_row(app, sim, connected, factory, run_jobs):
    account, shop = connected.account, connected.ig
    carla = shop.add_customer("carla")
    first = carla.sends_text("first", at=T0, deliver=False)
    second = carla.sends_text("second", at=T0 + 10, deliver=False)
    # The webhook for the first one arrived (Meta's ms timestamp); the second one was missed.
    conversation_id = factory.conversation(account, carla.igsid, messages=[
        {"mid": first.mid, "text": "first", "ts": T0 * 1000 + 123}]).id
    kept = _messages(app, account.id)[first.mid]

    run = _resync(app, account.id, run_jobs)

    assert run.summary["created_messages"] == 1 and run.summary["created_conversations"] == 0
    rows = _messages(app, account.id)
    assert sorted(rows) == sorted([first.mid, second.mid])
    assert rows[first.mid].id == kept.id and rows[first.mid].meta_timestamp == T0 * 1000 + 123
    assert rows[second.mid].conversation_id == conversation_id
    with app.app_context():
        thread = db.session.get(Conversation, conversation_id)
        assert thread.graph_conversation_id == shop.conversation_id(carla)
        assert thread.last_message_preview == "second" and thread.unread_count == 1


def test_a_webhook_late_for_a_message_the_resync_brought_changes_nothing(app, sim_webhooks, connected,
                                                                         run_jobs):
    account, shop = connected.account, connected.ig
    eve = shop.add_customer("eve")
    late = eve.sends_text("are you open on sunday?", at=T0, deliver=False)  # Meta's webhook is delayed
    echo = shop.types_in_app(eve, "Yes, 10 to 4", at=T0 + 5, deliver=False)
    _resync(app, account.id, run_jobs)
    before = _messages(app, account.id)

    for sent, kind in ((late, "message"), (echo, "echo")):
        delivery = sim_webhooks.webhooks.emit(shop.ig_user_id, kind, sent.event, strict=True)
        assert delivery.status == 200

    after = _messages(app, account.id)
    assert {mid: row.id for mid, row in after.items()} == {mid: row.id for mid, row in before.items()}
    assert sorted(after) == sorted([late.mid, echo.mid])


def test_our_send_still_waiting_for_its_answer_is_claimed_not_doubled(app, sim, connected, factory, run_jobs):
    """The Send API delivered, the send job has not recorded the mid yet, and a resync lists the message."""
    from inbox.services.graph import GraphClient

    account, shop = connected.account, connected.ig
    dora = shop.add_customer("dora")
    dora.sends_text("Is it still available?", at=T0, deliver=False)
    conversation = factory.conversation(account, dora.igsid)
    pending_id = factory.message(conversation, "Yes, ships today!", out=True, status="pending",
                                 client_token="tok-1").id
    with app.app_context():
        sent = GraphClient.for_account(db.session.get(Account, account.id)).send_text(dora.igsid, "Yes, ships today!")

    run = _resync(app, account.id, run_jobs)

    assert run.state == "finished"
    rows = _messages(app, account.id)
    assert sorted(r.text for r in rows.values()) == ["Is it still available?", "Yes, ships today!"]
    ours = rows[sent.message_id]
    assert (ours.id, ours.sender_kind, ours.status) == (pending_id, "staff", "sent")


def test_pages_follow_the_rate_limit_without_a_single_throttled_call(app, sim, connected, client, auth,
                                                                    factory, run_jobs):
    account, shop = connected.account, connected.ig
    for i in range(7):
        shop.add_customer(f"c{i}").sends_text(f"hi {i}", at=T0 + i, deliver=False)
    assert sim.settings.limits.conversations == 2.0  # Meta's 2 calls per second
    auth.login(factory.staff_on(account, "admin"))
    started = client.post(f"/accounts/{account.id}/runs/resync", headers=HTMX)
    run_id = int(re.search(r'id="run-(\d+)"', started.get_data(as_text=True)).group(1))
    run_jobs()

    calls = sim.calls_to("conversations")
    assert len(calls) == 4 and [c.code for c in calls] == [None] * 4  # 2 per page
    gaps = [b.at - a.at for a, b in zip(calls, calls[1:])]
    assert all(gap > 0 for gap in gaps)
    run = job_run(app, run_id)
    assert run.state == "finished" and (run.progress_done, run.progress_total) == (7, 7)
    status = client.get(f"/accounts/{account.id}/runs/{run_id}", headers=HTMX)
    assert status.status_code == 286
    assert "7 conversations (7 new) · 7 messages (7 new) · 7 usernames updated · 4 Instagram calls." in _text(status)


def test_when_meta_asks_for_less_data_the_pages_get_smaller(app, sim, connected, run_jobs):
    account, shop = connected.account, connected.ig
    app.config["SYNC_PAGE_SIZE"] = 4
    for i in range(6):
        shop.add_customer(f"d{i}").sends_text("hi", at=T0 + i, deliver=False)
    attempts = app.config["GRAPH_READ_RETRIES"] + 1
    sim.fail_next("conversations", 1, message="Please reduce the amount of data you're asking for, then retry "
                                              "your request", times=attempts)
    run = _resync(app, account.id, run_jobs)
    assert run.state == "finished" and run.summary["conversations"] == 6
    ok = [c for c in sim.calls_to("conversations") if c.code is None]
    assert len(ok) == 3  # 2 per page after halving 4


def test_a_dead_token_stops_the_resync_and_keeps_nothing_half_done(app, sim, connected, run_jobs):
    account, shop = connected.account, connected.ig
    shop.add_customer("erik").sends_text("hi", deliver=False)
    shop.expire_token()
    run = _resync(app, account.id, run_jobs)
    assert run.state == "failed" and "Reconnect the account" in run.error
    assert run.summary["stopped"] == run.error and run.summary["conversations"] == 0
    assert failed_jobs(app) == []
    with app.app_context():
        assert db.session.get(Account, account.id).status == "reconnect_needed"


def test_only_admins_may_resync(app, sim, connected, client, auth, factory):
    account = connected.account
    auth.login(factory.staff_on(account, "agent"))
    assert client.post(f"/accounts/{account.id}/runs/resync", headers=HTMX).status_code == 403
    assert count(app, JobRun) == 0
    people = client.get(f"/accounts/{account.id}/people/").get_data(as_text=True)
    assert "Refresh identities" in people and ">Resync<" not in people
    assert client.post(f"/accounts/{account.id}/runs/resync", headers=HTMX, csrf=False).status_code == 400


def test_a_crashed_resync_runs_again_without_duplicating_anything(app, app_config, sim, connected, run_jobs,
                                                                  tmp_path):
    """A real worker process is killed (SIGKILL) in the middle of a resync; the next run completes it."""
    account, shop = connected.account, connected.ig
    customers = [shop.add_customer(f"k{i}") for i in range(10)]
    for i, customer in enumerate(customers):
        customer.sends_text(f"first {i}", at=T0 + i, deliver=False)
        shop.types_in_app(customer, f"answer {i}", at=T0 + 100 + i, deliver=False)
    sim.faults.latency = 0.3  # slow enough to be killed between two pages
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text("SYNC_PAGE_SIZE = 2\nJOB_HEARTBEAT_SECONDS = 0.3\n")
    env = {**os.environ, "INBOX_INSTANCE_PATH": str(instance), "INBOX_ENV": "test"}
    for name in ("DATABASE_URL", "REDIS_URL", "REDIS_NAMESPACE", "TOKEN_ENCRYPTION_KEY", "SECRET_KEY",
                 "META_APP_SECRET", "META_VERIFY_TOKEN", "GRAPH_API_BASE"):
        env[name] = str(app_config[name])
    with app.app_context():
        run, _ = sync.start_resync(account.id)
        crashed_id = run.id
    worker = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parents[2] / "worker.py"), "--burst"],
                              env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def committed_a_page() -> bool:
            if count(app, Conversation) >= 2:
                return True
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
            return False

        wait_until(committed_a_page, timeout=60, interval=0.02, what="the worker to commit a page")
    finally:
        kill_with_children(worker.pid)
        worker.wait(timeout=10)
        worker.stderr.close()
    partial = count(app, Conversation)
    assert 2 <= partial < 10
    assert job_run(app, crashed_id).state == "running"  # nothing ended it: the process just vanished

    # Once its heartbeat has gone quiet (0.3 s must pass), the dead run no longer blocks a new one.
    app.config["JOB_HEARTBEAT_SECONDS"] = 0.3

    def dead() -> bool:
        db.session.expire_all()
        return not jobruns.is_alive(db.session.get(JobRun, crashed_id))

    with app.app_context():
        wait_until(dead, timeout=10, interval=0.1, what="the dead run's heartbeat to go quiet")
    sim.faults.latency = 0
    second = _resync(app, account.id, run_jobs)
    assert job_run(app, crashed_id).state == "failed" and job_run(app, crashed_id).error == jobruns.DIED
    assert second.state == "finished"
    assert second.summary["created_conversations"] == 10 - partial
    assert count(app, Conversation) == 10 and count(app, Message) == 20
    with app.app_context():
        mids = list(db.session.scalars(select(Message.mid)))
    assert len(mids) == len(set(mids)) == 20

    third = _resync(app, account.id, run_jobs)
    assert (third.summary["created_conversations"], third.summary["created_messages"]) == (0, 0)
    assert count(app, Message) == 20


# --- Reading the API's shapes: odd and hostile payloads ------------------------------------

ACCOUNT = "17841400000000001"


def test_parse_conversation_never_takes_the_account_as_the_customer():
    data = {"id": "c1", "participants": {"data": [{"id": ACCOUNT, "username": "shop"},
                                                  {"id": "555", "username": "zoe"}]}}
    parsed = sync.parse_conversation(data, ACCOUNT)
    assert (parsed.customer_igsid, parsed.customer_username, parsed.skipped) == ("555", "zoe", None)
    alone = sync.parse_conversation({"id": "c2", "participants": {"data": [{"id": ACCOUNT}]}}, ACCOUNT)
    assert alone.skipped and alone.customer_igsid is None
    # Without participants, the other side of a message.
    from_messages = sync.parse_conversation({"id": "c3", "messages": {"data": [
        {"id": "m1", "created_time": "2026-01-01T10:00:00+0000", "from": {"id": ACCOUNT},
         "to": {"data": [{"id": "777"}]}, "message": "hi"}]}}, ACCOUNT)
    assert from_messages.customer_igsid == "777" and len(from_messages.messages) == 1


@pytest.mark.parametrize("data", [
    None, [], "conversation", 42, {}, {"participants": "x"}, {"participants": {"data": [None, 5, {"id": True}]}},
    {"id": "c", "participants": {"data": [{"id": "5"}]}, "messages": {"data": [
        None, {"id": None}, {"id": "m", "created_time": "yesterday"}, {"id": "m2", "created_time": True},
        {"id": "m3 with spaces", "created_time": "2026-01-01T10:00:00+0000"},
        {"id": "m4", "created_time": "2026-01-01T10:00:00+0000", "from": {"id": "5"}, "message": 7,
         "attachments": {"data": [None, {"image_data": "x"}, {"file_url": 3}]}, "shares": [{"link": None}],
         "story": {"mention": "x"}, "reactions": {"data": [{"reaction": "love", "users": "all"}]}}]}},
])
def test_parse_conversation_survives_odd_payloads(data):
    parsed = sync.parse_conversation(data, ACCOUNT)
    assert parsed.skipped or parsed.customer_igsid
    for message in parsed.messages:
        assert message.mid and message.timestamp > 0 and message.text is None


def test_times_and_attachment_kinds_from_the_api():
    assert sync.parse_time("2026-01-01T10:00:00+0000") == 1767261600000
    assert sync.parse_time("2026-01-01T10:00:00Z") == 1767261600000
    assert sync.parse_time(1767261600) == 1767261600000 and sync.parse_time(1767261600000) == 1767261600000
    assert sync.parse_time("not a time") is None and sync.parse_time(-5) is None
    kinds = sync.parse_attachments({
        "attachments": {"data": [{"image_data": {"url": "https://a/1"}}, {"video_data": {"url": "https://a/2"}},
                                 {"file_url": "https://a/3", "mime_type": "audio/mp4"},
                                 {"file_url": "https://a/4", "mime_type": "application/pdf", "name": "menu.pdf"},
                                 {"id": "weird"}]},
        "shares": {"data": [{"link": "https://a/5", "name": "A post"}]},
        "story": {"mention": {"link": "https://a/6", "id": "1801"}}})
    assert [(a.type, a.source_url) for a in kinds] == [
        ("image", "https://a/1"), ("video", "https://a/2"), ("audio", "https://a/3"), ("file", "https://a/4"),
        ("unknown", None), ("share", "https://a/5"), ("story_mention", "https://a/6")]
    assert kinds[3].title == "menu.pdf" and kinds[5].title == "A post" and kinds[6].media_id == "1801"


def _written(app, account_id: int, customer: str) -> tuple[list[tuple], tuple]:
    """What a user sees of a customer's thread: each message's fields and attachments, and the list row."""
    with app.app_context():
        conversation = db.session.scalars(select(Conversation).where(
            Conversation.account_id == account_id, Conversation.customer_igsid == customer)).one()
        rows = db.session.scalars(select(Message).where(Message.conversation_id == conversation.id)
                                  .order_by(Message.meta_timestamp)).all()
        messages = [(m.direction, m.sender_kind, m.sender_igsid == customer, m.text, m.meta_timestamp, m.status,
                     m.is_deleted, m.edit_count, m.reply_to_mid, m.is_unsupported,
                     [(a.type, a.source_url is not None, a.position) for a in m.attachments]) for m in rows]
        row = (conversation.last_message_at, conversation.last_message_preview,
               conversation.last_message_direction, conversation.last_message_sender_kind,
               conversation.last_customer_message_at, conversation.unread_count, conversation.status)
        return messages, row


def test_resync_and_webhooks_write_a_message_the_same_way_in_either_order(app, sim_webhooks, connected,
                                                                          run_jobs):
    """One write path: the same thread arriving by webhook then resync, or resync then webhook, is the same rows."""
    account, shop = connected.account, connected.ig
    ann, bob = shop.add_customer("ann"), shop.add_customer("bob")

    def thread(customer, deliver: bool) -> list:
        return [customer.sends_text("do you ship to Lyon?", at=T0, deliver=deliver),
                customer.sends_attachment("image", text=None, at=T0 + 2, deliver=deliver),
                shop.types_in_app(customer, "Yes, in two days", at=T0 + 5, deliver=deliver)]

    thread(ann, deliver=True)  # ann's messages came by webhook first
    bob_sent = thread(bob, deliver=False)  # bob's webhooks are late: the resync brings them first
    webhook_first = _written(app, account.id, ann.igsid)
    ann_ids = {mid: row.id for mid, row in _messages(app, account.id).items()}

    run = _resync(app, account.id, run_jobs)
    assert run.summary["created_messages"] == 3  # bob's, not ann's again
    resync_first = _written(app, account.id, bob.igsid)
    for sent, kind in zip(bob_sent, ("message", "message", "echo")):
        assert sim_webhooks.webhooks.emit(shop.ig_user_id, kind, sent.event, strict=True).status == 200

    # Neither order made a second row or changed a row the other path wrote ...
    rows = _messages(app, account.id)
    assert len(rows) == 6 and all(rows[mid].id == ann_ids[mid] for mid in ann_ids)
    assert _written(app, account.id, ann.igsid) == webhook_first
    assert _written(app, account.id, bob.igsid) == resync_first
    # ... and both paths wrote the same thing: messages, attachments and the list row.
    assert resync_first == webhook_first
    assert webhook_first[1][1] == "Yes, in two days" and webhook_first[1][5] == 0
