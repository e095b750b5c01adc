"""Deliveries an outage or a crash interrupted are replayed by the worker on its own."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import insert

from inbox.extensions import db
from inbox.models import PeriodicTask, WebhookDelivery, utcnow
from inbox.queue import enqueue
from inbox.services import periodic
from tests.support.stored import deliveries, messages
from tests.support.webhooks import encode, envelope, fixture, message


def stored(app, body: bytes, *, status: str, age: timedelta, attempts: int = 1) -> int:
    """A delivery row as a crash (status "received") or a failed apply left it."""
    with app.app_context():
        delivery_id = db.session.execute(insert(WebhookDelivery).values(
            body=body, signature="sha256=x", origin="webhook", status=status, received_at=utcnow() - age,
            attempts=attempts, event_count=0).returning(WebhookDelivery.id)).scalar_one()
        db.session.commit()
    return delivery_id


def test_the_worker_applies_interrupted_and_retryable_failed_deliveries(app, run_jobs, account):
    crashed = stored(app, fixture("text"), status="received", age=timedelta(minutes=10))
    failed_once = stored(app, encode(envelope(message("m_failed_once", "second try"))), status="failed",
                         age=timedelta(minutes=1))
    given_up = stored(app, encode(envelope(message("m_given_up", "for a person"))), status="failed",
                      age=timedelta(minutes=1), attempts=3)
    in_flight = stored(app, encode(envelope(message("m_in_flight", "still being applied"))), status="received",
                       age=timedelta(seconds=5))

    with app.app_context():
        enqueue("inbox.tasks.recovery")
    assert run_jobs() == 1

    status = {d.id: d.status for d in deliveries(app)}
    assert status[crashed] == "processed" and status[failed_once] == "processed"
    assert status[given_up] == "failed"  # out of tries: the deliveries page shows it to a person
    assert status[in_flight] == "received"  # another process may still be applying it
    texts = {m.text for m in messages(app)}
    assert "second try" in texts and len(messages(app)) == 2
    assert not any(m.mid in ("m_given_up", "m_in_flight") for m in messages(app))

    # Replaying again changes nothing: applied exactly once.
    with app.app_context():
        enqueue("inbox.tasks.recovery")
    count = len(messages(app))
    run_jobs()
    assert len(messages(app)) == count


def test_recovery_is_due_once_per_interval_and_each_run_moves_the_next(app, run_jobs):
    now = datetime(2030, 5, 6, 12, 1, 30, tzinfo=timezone.utc)
    interval = app.config["WEBHOOK_RECOVER_INTERVAL_SECONDS"]
    with app.app_context():
        slot = periodic.next_slot("recovery", now)
        assert timedelta(0) < slot - now <= timedelta(seconds=interval)
        for _ in range(3):  # every worker that starts asks again: one row
            periodic.ensure_schedule()
        enqueue("inbox.tasks.recovery")
    run_jobs()
    with app.app_context():
        upcoming = db.session.get(PeriodicTask, "recovery").next_run_at
    assert timedelta(0) < upcoming - datetime.now(timezone.utc) <= timedelta(seconds=interval)