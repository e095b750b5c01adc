"""Webhook deliveries: stored before anything else, applied by the applier, replayable.

The webhook's whole job is `store_delivery`: one durable INSERT of the raw body on the
acknowledgement engine (no ORM unit of work, no pre-ping), then `applier.wake()`. The
applier (`services/applier.py`, in every worker) applies it. `receive_delivery` stores and
applies at once, through the same applier code, for `webhooks ingest`, tests
(`WEBHOOK_APPLY_INLINE`) and anything else that must know the outcome. Applying is
idempotent, so a replay of an applied delivery changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam, insert, or_, select
from sqlalchemy.orm import defer

from ..extensions import db
from ..models import WebhookDelivery, utcnow
from . import applier
from .applier import DeliveryResult
from .transactions import is_outage

log = logging.getLogger(__name__)

__all__ = ["DeliveryResult", "StorageUnavailable", "receive_delivery", "replay_delivery", "store_delivery"]

# A delivery still "received" this long after it arrived was interrupted (the process died
# or the database went away mid-way): replay --failed picks it up too.
INTERRUPTED_AFTER = timedelta(minutes=5)


class StorageUnavailable(RuntimeError):
    """The database cannot take the delivery now: answer 5xx so Meta retries."""


def store_delivery(body: bytes, signature: str | None = None, *, origin: str = "webhook",
                   claimed_by: str | None = None, status: str = "received", error: str | None = None,
                   attempts: int = 0) -> int:
    """One durable INSERT of the raw body on the acknowledgement engine (its own commit); the id.

    The statement is compiled once per engine and run on a pooled DBAPI connection: no ORM,
    no pre-ping. claimed_by: the caller applies it itself (the applier leaves it alone until
    the claim lapses). A delivery that can never be applied (over the size limit) is stored
    with status "failed" and the error, so a person sees it. Raises StorageUnavailable on a
    database outage.
    """
    now = utcnow().replace(tzinfo=None)  # UTCDateTime stores naive UTC
    values = {"body": body, "signature": signature, "origin": origin, "status": status, "error": error,
              "received_at": now, "attempts": attempts, "event_count": 0, "claimed_by": claimed_by,
              "claimed_at": now if claimed_by else None, "processed_at": now if status != "received" else None}
    engine = db.engines["ack"]
    sql, order = _insert_sql(engine)
    params = [values[name] for name in order] if order else values
    dbapi_error = engine.dialect.loaded_dbapi.Error
    for attempt in (1, 2):
        try:
            raw = engine.raw_connection()
        except Exception as exc:
            raise StorageUnavailable(str(exc)) from exc
        try:
            cursor = raw.cursor()
            cursor.execute(sql, params)
            delivery_id = cursor.fetchone()[0]
            raw.commit()
            return delivery_id
        except dbapi_error as exc:
            if engine.dialect.is_disconnect(exc, raw, None):
                raw.invalidate()  # a connection the database dropped (a restart): never pooled again
                if attempt == 1:
                    continue  # one more try on a fresh one
            if isinstance(exc, engine.dialect.loaded_dbapi.OperationalError) or is_outage(exc):
                raise StorageUnavailable(str(exc)) from exc
            raise
        finally:
            raw.close()  # back to the pool (a no-op after invalidate)
    raise AssertionError("unreachable")


def _insert_sql(engine) -> tuple[str, tuple[str, ...] | None]:
    """The INSERT … RETURNING id in the driver's own form, and the parameter order (positional drivers)."""
    cache = _INSERT_SQL.get(engine.dialect.name)
    if cache is None:
        table = WebhookDelivery.__table__
        names = ("body", "signature", "origin", "status", "error", "received_at", "attempts", "event_count",
                 "claimed_by", "claimed_at", "processed_at")
        statement = insert(table).values({name: bindparam(name) for name in names}).returning(table.c.id)
        compiled = statement.compile(dialect=engine.dialect)
        cache = _INSERT_SQL[engine.dialect.name] = (compiled.string, tuple(compiled.positiontup or ()) or None)
    return cache


_INSERT_SQL: dict[str, tuple[str, tuple[str, ...] | None]] = {}


def receive_delivery(body: bytes, signature: str | None = None, *, origin: str = "webhook",
                     create_accounts: bool = False) -> DeliveryResult:
    """Store the delivery (committed), then apply it here through the applier's code; its result."""
    owner = applier.new_owner(origin)
    delivery_id = store_delivery(body, signature, origin=origin, claimed_by=owner)
    claimed = applier.claim_one(delivery_id, owner)
    if claimed is None:  # cannot happen: the row was inserted with our claim
        raise RuntimeError(f"delivery {delivery_id} was taken by another applier")
    return _apply([claimed], create_accounts)


def replay_delivery(delivery_id: int) -> DeliveryResult | None:
    """Apply a stored delivery again (None when there is no such delivery).

    A delivery an applier holds right now is left to it: the result says "received".
    """
    owner = applier.new_owner("replay")
    try:
        claimed = applier.claim_one(delivery_id, owner, any_status=True)
    except Exception as exc:
        if is_outage(exc):
            raise StorageUnavailable(str(exc)) from exc
        raise
    if claimed is None:
        row = db.session.execute(select(WebhookDelivery.status, WebhookDelivery.claimed_by)
                                 .where(WebhookDelivery.id == delivery_id)).first()
        db.session.rollback()
        if row is None:
            return None
        return DeliveryResult(delivery_id, row.status, f"being applied now by {row.claimed_by}")
    return _apply([claimed], False)


def _apply(batch: list[applier.Claimed], create_accounts: bool) -> DeliveryResult:
    try:
        return applier.apply_claimed(batch, create_accounts=create_accounts)[0]
    except Exception as exc:
        db.session.rollback()
        if is_outage(exc):
            raise StorageUnavailable(str(exc)) from exc
        raise


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
    keeps failing stays on the deliveries page for a person, and so does one that failed
    before it was ever applied (over the size limit: attempts 0).
    """
    return list(db.session.scalars(
        select(WebhookDelivery.id).where(owed(max_attempts=max_attempts, received_before=utcnow() - INTERRUPTED_AFTER))
        .order_by(WebhookDelivery.id).limit(limit)
    ))


def owed(*, max_attempts: int, received_before=None):
    """The deliveries the inbox itself still owes: received and not applied (before a time, when
    given), or failed while applied with tries left. One that failed before it was ever applied
    (over the size limit: attempts 0) waits for a person instead."""
    received = WebhookDelivery.status == "received"
    if received_before is not None:
        received = received & (WebhookDelivery.received_at < received_before)
    return or_(received, (WebhookDelivery.status == "failed") & (WebhookDelivery.attempts >= 1)
               & (WebhookDelivery.attempts < max_attempts))


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
        if result is None or result.status == "received":
            continue  # gone, or an applier holds it right now
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
