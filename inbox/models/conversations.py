"""Conversations: one per (account, customer)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import UTCDateTime, utcnow

CONVERSATION_STATUSES = ("open", "done")
ASSIGNMENT_SOURCES = ("post_link", "ad", "product_referral", "comment", "manual", "auto_link")


class Conversation(db.Model):
    """The thread between an account and one customer."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("account_id", "customer_igsid"),
        # The list: newest activity first, keyset-paginated on (last_message_at, id).
        Index("ix_conversations_account_recent", "account_id", "last_message_at", "id"),
        # The "Unread" view and the unread total read only the few conversations waiting (migration 0002).
        Index("ix_conversations_unread", "account_id", "last_message_at", "id",
              postgresql_where=text("unread_count > 0"), sqlite_where=text("unread_count > 0")),
        # Mine / Unassigned / by person.
        Index("ix_conversations_assignee", "account_id", "assignee_user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    customer_igsid: Mapped[str] = mapped_column(String(64))
    graph_conversation_id: Mapped[str | None] = mapped_column(String(255))
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_message_preview: Mapped[str | None] = mapped_column(String(255))
    last_message_direction: Mapped[str | None] = mapped_column(String(8))
    last_message_sender_kind: Mapped[str | None] = mapped_column(String(16))
    # The 24-hour window runs from the customer's most recent message.
    last_customer_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unread_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="open")
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"), index=True)
    assignment_source: Mapped[str | None] = mapped_column(String(32))
    assigned_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The staff member who owns the conversation (None: unassigned).
    assignee_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    last_ad_id: Mapped[str | None] = mapped_column(String(64))
    last_ad_title: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
