"""Conversations and messages as ingestion writes them, for tests of what reads them.

Ingestion (services/ingest.py, its own branch) is the real writer; these rows follow its
conventions (direction, sender_kind, sender_igsid, meta_timestamp in ms) so identities
and resync can be tested before and after it lands.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select

from inbox.extensions import db
from inbox.models import Conversation, Identity, JobRun, Message, utcnow


def add_conversation(app, account, customer_igsid: str, *, messages: list[dict] | None = None) -> int:
    """A conversation with messages ({mid, text, ts_ms, out}); returns its id."""
    with app.app_context():
        now = utcnow()
        conversation = Conversation(account_id=account.id, customer_igsid=customer_igsid, unread_count=0,
                                    status="open", created_at=now, updated_at=now)
        db.session.add(conversation)
        db.session.flush()
        for m in messages or []:
            out = m.get("out", False)
            db.session.add(Message(
                account_id=account.id, conversation_id=conversation.id, mid=m["mid"],
                direction="out" if out else "in", sender_kind="instagram_app" if out else "customer",
                sender_igsid=account.ig_user_id if out else customer_igsid, text=m.get("text"),
                status="sent" if out else None, meta_timestamp=m["ts_ms"], created_at=now, updated_at=now))
            at = datetime.fromtimestamp(m["ts_ms"] / 1000, tz=timezone.utc)
            if conversation.last_message_at is None or at > conversation.last_message_at:
                conversation.last_message_at = at
                conversation.last_message_preview = m.get("text")
        db.session.commit()
        return conversation.id


def identity_rows(app, account_id: int | None = None) -> dict[str, Identity]:
    with app.app_context():
        query = select(Identity)
        if account_id is not None:
            query = query.where(Identity.account_id == account_id)
        rows = list(db.session.scalars(query))
        for row in rows:
            db.session.expunge(row)
        return {row.igsid: row for row in rows}


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def job_run(app, run_id: int) -> JobRun:
    with app.app_context():
        run = db.session.get(JobRun, run_id)
        db.session.expunge(run)
        return run


def self_rows(app) -> list[tuple[int, str]]:
    """Identity rows that hold their own account's id: must always be empty."""
    from inbox.models import Account

    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(Identity.account_id, Identity.igsid).join(Account, Account.id == Identity.account_id)
            .where(Identity.igsid == Account.ig_user_id))]
