"""Webhook deliveries as received, and background runs shown in the UI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import BigId, Json, UTCDateTime, utcnow

DELIVERY_STATUSES = ("received", "processed", "failed", "ignored")
JOB_STATES = ("queued", "running", "finished", "failed")
ERASURE_KINDS = ("customer", "account", "retention")
ERASURE_STATES = ("pending", "done", "nothing_held")


class WebhookDelivery(db.Model):
    """One signed POST from Meta, stored before we answer."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status", "status", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[str | None] = mapped_column(String(128))
    # How it reached us: "webhook", "cli" (webhooks ingest), "replay".
    origin: Mapped[str] = mapped_column(String(16), default="webhook")
    status: Mapped[str] = mapped_column(String(16), default="received")
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    # Per-event outcomes of the last attempt: [{index, type, action, reason, error}].
    results: Mapped[list[dict[str, Any]] | None] = mapped_column(Json)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The applier that took it (or the request or command applying it there and then) and
    # when: a claim older than APPLIER_LEASE_SECONDS belongs to someone who died, and lapses.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobRun(db.Model):
    """A background run staff started, with durable progress and summary."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_account_kind", "account_id", "kind", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    rq_job_id: Mapped[str] = mapped_column(String(128), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    started_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_active(self) -> bool:
        return self.state in ("queued", "running")


class Erasure(db.Model):
    """The audit line of data erased: what kind, who asked, how much went; never who it was about.

    An account erasure that Meta asked for (data-deletion callback) carries the confirmation
    code its status page is found by; it stays "pending" until the worker has erased it.
    """

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # SET NULL: an account erasure removes the account row itself.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    confirmation_code: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Who asked: "staff" (actor_user_id), "cli", "meta" (the data-deletion callback), "retention".
    requested_by: Mapped[str] = mapped_column(String(16))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    counts: Mapped[dict[str, Any] | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PeriodicTask(db.Model):
    """A periodic check's next run, kept in the database so a Redis that lost everything loses no run.

    The worker's reconciler enqueues a task whose `next_run_at` has passed (the job id names
    the slot, so every worker asking makes one job); the run moves `next_run_at` on when it
    ends, whether it succeeded or not. A run killed midway leaves it due: it runs again.
    """

    __tablename__ = "periodic_tasks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
