"""Redis killed or flushed, workers and the web process SIGKILLed: nothing owed is lost.

For each fault: every event Meta's simulator got a 200 for is applied exactly once, every
reply is sent exactly once (or failed with a reason), every media file and profile owed is
done, and the periodic checks run again, within 2 minutes and with nobody running a command.
Each case prints its counts. (PostgreSQL restarts are not exercised here: the machine's
PostgreSQL is shared with other test runs; the webhook's 503 on a database outage is tested
in tests/routes/test_webhooks.py.)
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from inbox.extensions import db
from inbox.models import Attachment, Conversation, Identity, JobRun, Message, PeriodicTask, utcnow
from inbox.services import identities, jobruns, obligations
from tests.support.clients import logged_in_client
from tests.support.processes import children
from tests.support.servers import GunicornServer
from tests.support.stack import eventually

LIMIT = 120  # seconds: "within 2 minutes, with nobody running a command"


# --- What the tests look at ------------------------------------------------------------------------

def stored_mids(app) -> Counter:
    with app.app_context():
        return Counter(db.session.scalars(select(Message.mid).where(Message.direction == "in")))


def owed(app) -> dict[str, int]:
    with app.app_context():
        return {kind: item.count for kind, item in obligations.oldest().items()}


def nothing_owed(app) -> bool:
    return not any(owed(app).values())


def conversation_of(app, customer) -> int:
    with app.app_context():
        return db.session.scalar(select(Conversation.id).where(Conversation.customer_igsid == customer.igsid))


def reply(app, client, account_id: int, customer, text: str) -> int:
    response = client.post(f"/accounts/{account_id}/conversations/{conversation_of(app, customer)}/reply",
                           data={"text": text, "client_token": uuid.uuid4().hex})
    assert response.status_code in (200, 201, 302), response.get_data(as_text=True)[:300]
    with app.app_context():
        return db.session.scalar(select(func.max(Message.id)).where(Message.text == text))


def replies_done(app, sim, customers, texts) -> bool:
    sim.settle(5)
    got = Counter(t for c in customers for t in c.received_texts)
    with app.app_context():
        rows = {m.text: m for m in db.session.scalars(select(Message).where(Message.text.in_(texts)))}
    return all(rows[t].status in ("sent", "seen") and got[t] == 1 or rows[t].status == "failed" and rows[t].error_message
               for t in texts)


def stream(customers, count: int, sent: list, *, pause: float = 0.05) -> threading.Thread:
    """Customers writing in turn, in a thread; `sent` collects what Meta sent (mid, acknowledged)."""
    def run():
        for n in range(count):
            s = customers[n % len(customers)].sends_text(f"message {n} {uuid.uuid4().hex[:6]}")
            sent.append(s)
            time.sleep(pause)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def check_applied_once(app, sim, sent) -> dict:
    sim.settle(60)
    acknowledged = {s.mid for s in sent if s.delivery is not None and s.delivery.state == "delivered"}
    took = eventually(lambda: acknowledged <= set(stored_mids(app)), timeout=LIMIT,
                      what="every acknowledged event to be applied")
    stored = stored_mids(app)
    assert all(stored[mid] == 1 for mid in acknowledged)
    return {"sent": len(sent), "acknowledged": len(acknowledged), "stored": sum(stored[m] for m in acknowledged),
            "seconds": took}


@pytest.fixture
def customers(stack):
    people = [stack.connected.ig.add_customer(f"buyer{n}", name=f"Buyer {n}") for n in range(3)]
    for person in people:
        assert person.sends_text("Hello, is this available?").delivery.status == 200
    return people


@pytest.fixture
def staff(stack, factory):
    return logged_in_client(stack.app, factory.staff_on(stack.connected.account, "agent"))


# --- Redis ---------------------------------------------------------------------------------------

def test_redis_killed_during_a_stream_and_during_replies(stack, private_redis, customers, staff):
    app, sim, account_id = stack.app, stack.sim, stack.connected.account.id
    sent: list = []
    writer = stream(customers, 30, sent)
    time.sleep(0.3)
    private_redis.kill()  # everything in it is gone, and nothing answers
    texts = [f"Reply during the outage {n}" for n in range(len(customers))]
    for customer, text in zip(customers, texts):
        reply(app, staff, account_id, customer, text)
    time.sleep(3)
    private_redis.start()
    writer.join(60)
    applied = check_applied_once(app, sim, sent)
    took = eventually(lambda: replies_done(app, sim, customers, texts), timeout=LIMIT,
                      what="every reply sent once or failed with a reason")
    eventually(lambda: nothing_owed(app), timeout=LIMIT, what="nothing owed")
    print(f"\nredis killed 3 s: events {applied}; replies {len(texts)} done in {took} s; owed {owed(app)}")


def test_redis_flushed_while_work_waits(stack, private_redis, customers, staff):
    app, sim, connected = stack.app, stack.sim, stack.connected
    stack.worker.stop()  # work piles up in Redis while no worker runs
    newcomer = connected.ig.add_customer("newcomer", name="New Comer")
    assert newcomer.sends_attachment("image", count=2).delivery.status == 200
    texts = [f"Reply before the flush {n}" for n in range(len(customers))]
    for customer, text in zip(customers, texts):
        reply(app, staff, connected.account.id, customer, text)
    flushed_at = utcnow()
    private_redis.flush()
    stack.start_worker("w2")
    took = eventually(lambda: replies_done(app, sim, customers, texts), timeout=LIMIT, what="the replies")
    eventually(lambda: nothing_owed(app), timeout=LIMIT, what="media and the newcomer's profile")
    with app.app_context():
        states = Counter(db.session.scalars(select(Attachment.media_state)))
        profile = db.session.scalar(select(Identity.username).where(Identity.igsid == newcomer.igsid))
    assert states == Counter({"stored": 2}) and profile == "newcomer"

    def recovery_ran_after_flush():
        with app.app_context():
            row = db.session.get(PeriodicTask, "recovery")
            return row is not None and row.last_finished_at is not None and row.last_finished_at > flushed_at
    again = eventually(recovery_ran_after_flush, timeout=LIMIT, what="the periodic recovery to run again")
    with app.app_context():
        assert db.session.get(PeriodicTask, "daily_check").next_run_at > utcnow()
    print(f"\nredis flushed: {len(texts)} replies in {took} s, media {dict(states)}, profile {profile!r}, "
          f"recovery ran again after {again} s")


# --- Workers ---------------------------------------------------------------------------------------

def test_worker_killed_during_a_send(stack, customers, staff):
    app, sim = stack.app, stack.sim
    sim.faults.latency = 2.0  # the Send API call is in flight when the worker dies
    text = "Sent while the worker died"
    message_id = reply(app, staff, stack.connected.account.id, customers[0], text)

    def in_flight():
        with app.app_context():
            return db.session.scalar(select(Message.error_code).where(Message.id == message_id)) == "sending"
    eventually(in_flight, timeout=30, what="the send to be in flight")
    stack.worker.kill()
    sim.faults.latency = 0.0
    stack.start_worker("w1")  # the same name, as a supervisor restarts it
    took = eventually(lambda: replies_done(app, sim, customers[:1], [text]), timeout=LIMIT,
                      what="the reply to be sent once or failed with a reason")
    with app.app_context():
        row = db.session.get(Message, message_id)
        status, reason = row.status, row.error_message
    print(f"\nworker killed mid-send: {status} ({reason or 'no error'}), received "
          f"{customers[0].received_texts.count(text)} time(s), settled in {took} s")
    assert customers[0].received_texts.count(text) <= 1


def test_worker_killed_during_an_identity_refresh(stack, customers):
    app, sim, account_id = stack.app, stack.sim, stack.connected.account.id
    eventually(lambda: nothing_owed(app), timeout=LIMIT, what="first contact to settle")
    sim.faults.latency = 6.0  # each profile call: the run is in the middle when the worker dies
    with app.app_context():
        run, _ = identities.start_refresh(account_id)
        run_id = run.id

    def state():
        with app.app_context():
            return db.session.get(JobRun, run_id).state
    eventually(lambda: state() == "running", timeout=30, what="the refresh to run")
    time.sleep(1)
    assert state() == "running"
    stack.worker.kill()
    sim.faults.latency = 0.0
    stack.start_worker("w1")
    # RQ may run the abandoned job again (the run then finishes), or the reconciler ends it as dead.
    took = eventually(lambda: state() in ("failed", "finished"), timeout=LIMIT,
                      what="the killed run to end without anyone opening it")
    with app.app_context():
        ended = db.session.get(JobRun, run_id)
        outcome, error = ended.state, ended.error
        assert outcome == "finished" or error == jobruns.DIED
        again, created = identities.start_refresh(account_id)
        assert created  # a new refresh can start
    eventually(lambda: _state(app, again.id) == "finished", timeout=LIMIT, what="a new refresh")
    print(f"\nworker killed mid-refresh: the run ended {outcome} {took} s later without anyone opening it"
          f"{' (' + error + ')' if error else ''}; a new one finished")


def _state(app, run_id):
    with app.app_context():
        return db.session.get(JobRun, run_id).state


def test_worker_killed_during_a_media_download(stack, customers):
    app, sim = stack.app, stack.sim
    stack.worker.stop()
    sim.faults.cdn_latency = 3.0  # the download is in flight when the worker dies
    assert customers[0].sends_attachment("image", count=3).delivery.status == 200
    downloading = stack.start_worker("w1")
    time.sleep(1.5)
    downloading.kill()
    sim.faults.cdn_latency = 0.0
    stack.start_worker("w1")
    took = eventually(lambda: nothing_owed(app) and _media(app) == Counter({"stored": 3}), timeout=LIMIT,
                      what="every image kept")
    print(f"\nworker killed mid-download: media {dict(_media(app))} in {took} s")


def _media(app) -> Counter:
    with app.app_context():
        return Counter(db.session.scalars(select(Attachment.media_state)))


# --- The web process ------------------------------------------------------------------------------

def test_web_process_killed_with_requests_in_flight(stack, customers, tmp_path):
    app, sim = stack.app, stack.sim
    sent: list = []
    writers = [stream(customers, 15, sent, pause=0.02) for _ in range(3)]
    time.sleep(0.4)
    port = stack.web.port
    for pid in [*children(stack.web.proc.pid), stack.web.proc.pid]:
        os.kill(pid, signal.SIGKILL)  # the master and its worker: requests die mid-flight
    stack.web.proc.wait()
    replacement = GunicornServer(app.config, tmp_path / "instance", threads=8, port=port).start()
    try:
        for writer in writers:
            writer.join(60)
        applied = check_applied_once(app, sim, sent)
    finally:
        replacement.stop()
    print(f"\nweb process SIGKILLed mid-stream: events {applied}")
