"""Webhook deliveries: stored before anything else, then applied event by event, replayable.

A delivery is committed before it is parsed, so a signed POST is never lost: if applying
it fails, the row says so (status "failed", the error, per-event results) and
`flask --app inbox webhooks replay` or the deliveries page applies it again. Applying is
idempotent, so a replay of an applied delivery changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import defer

from .. import metrics
from ..extensions import db
from ..logs import log_context
from ..models import WebhookDelivery, utcnow
from .events import InvalidBody, parse_delivery
from .ingest.dispatch import apply_events
from .ingest.outcomes import Outcome
from .transactions import is_outage

log = logging.getLogger(__name__)

# A delivery still "received" this long after it arrived was interrupted (the process died
# or the database went away mid-way): replay --failed picks it up too.
INTERRUPTED_AFTER = timedelta(minutes=5)


class StorageUnavailable(RuntimeError):
    """The database cannot take the delivery now: answer 5xx so Meta retries."""


@dataclass
class DeliveryResult:
    delivery_id: int
    status: str
    error: str | None = None
    outcomes: list[Outcome] = field(default_factory=list)


def receive_delivery(body: bytes, signature: str | None = None, *, origin: str = "webhook",
                     create_accounts: bool = False) -> DeliveryResult:
    """Store the delivery (committed), then apply it. Raises StorageUnavailable on a database outage."""
    try:
        now = utcnow()
        table = WebhookDelivery.__table__
        delivery_id = db.session.execute(
            insert(table).values(body=body, signature=signature, origin=origin, status="received", received_at=now,
                                 attempts=0, event_count=0).returning(table.c.id)
        ).scalar_one()
        db.session.commit()  # durable before anything else happens to it
    except Exception as exc:
        db.session.rollback()
        if is_outage(exc):
            raise StorageUnavailable(str(exc)) from exc
        raise
    return _process(delivery_id, body, now, attempts=1, create_accounts=create_accounts)


def replay_delivery(delivery_id: int) -> DeliveryResult | None:
    """Apply a stored delivery again (None when there is no such delivery)."""
    row = db.session.execute(
        select(WebhookDelivery.body, WebhookDelivery.received_at, WebhookDelivery.attempts)
        .where(WebhookDelivery.id == delivery_id)
    ).first()
    if row is None:
        return None
    db.session.rollback()  # end the read; every event gets its own transaction
    return _process(delivery_id, bytes(row.body), row.received_at, attempts=(row.attempts or 0) + 1)


def replayable_ids() -> list[int]:
    """Failed deliveries, and ones interrupted while being applied, oldest first."""
    cutoff = utcnow() - INTERRUPTED_AFTER
    return list(db.session.scalars(
        select(WebhookDelivery.id)
        .where(or_(WebhookDelivery.status == "failed",
                   (WebhookDelivery.status == "received") & (WebhookDelivery.received_at < cutoff)))
        .order_by(WebhookDelivery.id)
    ))


@dataclass
class RecoveryReport:
    replayed: int = 0
    processed: int = 0
    still_failed: int = 0
    stopped_by_outage: bool = False


def recoverable_ids(*, max_attempts: int, limit: int = 500) -> list[int]:
    """What the worker replays on its own: interrupted deliveries, and failed ones with tries left.

    A delivery fails when one of its events raised (a deadlock, a bug, a row another
    process held); applying is idempotent, so trying again a few times is safe. One that
    keeps failing stays on the deliveries page for a person.
    """
    cutoff = utcnow() - INTERRUPTED_AFTER
    return list(db.session.scalars(
        select(WebhookDelivery.id)
        .where(or_((WebhookDelivery.status == "received") & (WebhookDelivery.received_at < cutoff),
                   (WebhookDelivery.status == "failed") & (WebhookDelivery.attempts < max_attempts)))
        .order_by(WebhookDelivery.id).limit(limit)
    ))


def recover_deliveries() -> RecoveryReport:
    """Replay interrupted and retryable failed deliveries, oldest first; stop at an outage."""
    max_attempts = int(current_app.config.get("WEBHOOK_AUTO_REPLAY_ATTEMPTS", 3))
    ids = recoverable_ids(max_attempts=max_attempts)
    db.session.rollback()
    report = RecoveryReport()
    for delivery_id in ids:
        try:
            result = replay_delivery(delivery_id)
        except StorageUnavailable:
            report.stopped_by_outage = True
            break
        if result is None:
            continue
        report.replayed += 1
        if result.status == "failed":
            report.still_failed += 1
        else:
            report.processed += 1
    if report.replayed:
        log.info("recovered webhook deliveries: %s", report)
    return report


def list_deliveries(*, failed_only: bool = True, limit: int = 100) -> list[WebhookDelivery]:
    """For the deliveries page: failed (and interrupted) ones, or the most recent of all."""
    query = (select(WebhookDelivery).options(defer(WebhookDelivery.body))
             .order_by(WebhookDelivery.id.desc()).limit(limit))
    if failed_only:
        cutoff = utcnow() - INTERRUPTED_AFTER
        query = query.where(or_(WebhookDelivery.status == "failed",
                                (WebhookDelivery.status == "received") & (WebhookDelivery.received_at < cutoff)))
    return list(db.session.scalars(query))


def _process(delivery_id: int, body: bytes, received_at, *, attempts: int,
             create_accounts: bool = False) -> DeliveryResult:
    """Parse and apply every event, then record the outcome (in the last event's transaction)."""
    received_ms = int(received_at.timestamp() * 1000)
    invalid: list[Outcome] = []
    try:
        events = list(parse_delivery(body, received_ms).events)
    except InvalidBody as exc:
        events = []
        invalid.append(Outcome(index=0, type="invalid", action="ignored", reason=str(exc), error=str(exc)))

    def record(applied: list[Outcome]) -> None:
        _record(delivery_id, [*invalid, *applied], attempts)

    try:
        with log_context(delivery_id=delivery_id):
            outcomes = [*invalid, *apply_events(events, create_accounts=create_accounts, finish=record,
                                                label=f"webhook delivery {delivery_id}")]
    except Exception as exc:
        if is_outage(exc):
            raise StorageUnavailable(str(exc)) from exc
        raise
    status, error = _status(outcomes)
    metrics.delivery_finished(status)
    metrics.events_applied(outcomes, received_at.timestamp())
    return DeliveryResult(delivery_id=delivery_id, status=status, error=error, outcomes=outcomes)


def _status(outcomes: list[Outcome]) -> tuple[str, str | None]:
    failures = [o for o in outcomes if o.error]
    if failures and len(outcomes) == 1:
        return "failed", failures[0].error
    if failures:
        return "failed", f"{len(failures)} of {len(outcomes)} event(s) failed; first: {failures[0].error}"
    if any(o.action != "ignored" for o in outcomes):
        return "processed", None
    return "ignored", None  # nothing for the inbox: comments, unknown accounts, other objects


def _record(delivery_id: int, outcomes: list[Outcome], attempts: int) -> None:
    """Write the delivery's status and per-event results (the caller commits)."""
    status, error = _status(outcomes)
    table = WebhookDelivery.__table__
    db.session.execute(
        update(table).where(table.c.id == delivery_id).values(
            status=status, error=error, attempts=attempts, event_count=len(outcomes),
            results=[o.result() for o in outcomes], processed_at=utcnow(),
        )
    )
