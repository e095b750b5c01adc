"""Read what the app stored, the way a person would check it: rows (detached), not internals."""

from __future__ import annotations

from sqlalchemy import func, select

from inbox.extensions import db
from inbox.models import Account, Attachment, Conversation, Identity, JobRun, Message, Reaction, WebhookDelivery


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def snapshot(app) -> dict[str, list[tuple]]:
    """Every row of the conversations' tables (not the delivery log), for before/after comparisons."""
    with app.app_context():
        out = {}
        for model in (Conversation, Message, Attachment, Reaction):
            columns = [c for c in model.__table__.columns]
            rows = db.session.execute(select(*columns).order_by(model.id)).all()
            out[model.__tablename__] = [tuple(r) for r in rows]
        db.session.rollback()
        return out


def messages(app, **where) -> list[Message]:
    """Messages in thread order (Meta's time), with their attachments and reactions loaded."""
    with app.app_context():
        query = select(Message).order_by(Message.meta_timestamp, Message.id)
        for key, value in where.items():
            query = query.where(getattr(Message, key) == value)
        rows = list(db.session.scalars(query))
        for row in rows:
            _ = row.attachments, row.reactions  # loaded before the session closes
        db.session.expunge_all()
        return rows


def conversations(app) -> list[Conversation]:
    with app.app_context():
        rows = list(db.session.scalars(select(Conversation).order_by(Conversation.id)))
        db.session.expunge_all()
        return rows


def conversation_of(app, account_id: int, igsid: str) -> Conversation:
    """The one conversation of this account with this customer."""
    with app.app_context():
        conv = db.session.scalars(select(Conversation).where(Conversation.account_id == account_id,
                                                             Conversation.customer_igsid == igsid)).one()
        db.session.expunge(conv)
        return conv


def deliveries(app) -> list[WebhookDelivery]:
    with app.app_context():
        rows = list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        db.session.expunge_all()
        return rows


def last_results(app) -> list[dict]:
    """The outcome of each event of the last delivery."""
    return deliveries(app)[-1].results or []


def identity_rows(app, account_id: int | None = None) -> dict[str, Identity]:
    """Identities by IGSID (of one account, or all)."""
    with app.app_context():
        query = select(Identity)
        if account_id is not None:
            query = query.where(Identity.account_id == account_id)
        rows = list(db.session.scalars(query))
        for row in rows:
            db.session.expunge(row)
        return {row.igsid: row for row in rows}


def self_rows(app) -> list[tuple[int, str]]:
    """Identity rows that hold their own account's id: must always be empty."""
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(Identity.account_id, Identity.igsid).join(Account, Account.id == Identity.account_id)
            .where(Identity.igsid == Account.ig_user_id))]


def job_run(app, run_id: int) -> JobRun:
    with app.app_context():
        run = db.session.get(JobRun, run_id)
        db.session.expunge(run)
        return run
