"""Read what ingestion wrote, the way a person would check it: rows, not internals."""

from __future__ import annotations

from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Attachment, Conversation, Message, Reaction, WebhookDelivery


def snapshot(app) -> dict[str, list[tuple]]:
    """Every row of the inbox's tables (not the delivery log), for before/after comparisons."""
    with app.app_context():
        out = {}
        for model in (Conversation, Message, Attachment, Reaction):
            columns = [c for c in model.__table__.columns]
            rows = db.session.execute(select(*columns).order_by(model.id)).all()
            out[model.__tablename__] = [tuple(r) for r in rows]
        db.session.rollback()
        return out


def messages(app, **where) -> list[Message]:
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
    """The one conversation of this account with this customer (detached)."""
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
    return deliveries(app)[-1].results or []
