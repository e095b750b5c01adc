"""Insights: per-account settings (time zone, business hours, currency), the per-conversation
facts and 15-minute activity counts the Insights page reads, and sales outcomes."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import BigId, Json, UTCDateTime, utcnow

CONVERSATION_SOURCES = ("dm", "post", "ad", "story", "comment")
SALE_OUTCOMES = ("sold", "not_sold")
# Activity is counted per 15 minutes of UTC: every real time zone's offset is a multiple of it.
SLOT_MS = 15 * 60 * 1000


class InsightSettings(db.Model):
    """An account's time zone, weekly business hours and currency, and how far its facts are up to date."""

    __tablename__ = "insight_settings"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # {"0": [[540, 1020]], ...}: weekday (0 = Monday) → open intervals in minutes after local
    # midnight. None: every hour counts.
    business_hours: Mapped[dict[str, Any] | None] = mapped_column(Json)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    # Messages changed after this time are folded into the facts by the next refresh.
    refreshed_through: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The time zone and hours the stored response times were computed with.
    facts_key: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ConversationFact(db.Model):
    """What the Insights page needs of one conversation: when and how it started, when it was answered."""

    __tablename__ = "insight_conversations"
    __table_args__ = (
        # Covering on PostgreSQL: the page's counts read the index alone (index-only scans).
        Index("ix_insight_conversations_started", "account_id", "started_ms",
              postgresql_include=["started_day", "source", "post_media_id", "ad_id", "conversation_id"]),
        Index("ix_insight_conversations_first_customer", "account_id", "first_customer_ms",
              postgresql_include=["first_customer_day", "response_seconds", "responder_user_id"]),
    )

    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # Meta's time (ms) of the conversation's first message, and what brought it (CONVERSATION_SOURCES).
    started_ms: Mapped[int] = mapped_column(BigInteger)
    # Local days (the account's time zone, recomputed when it changes) the page groups by.
    started_day: Mapped[date] = mapped_column(Date)
    first_customer_day: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(16))
    # The post shared (or the ad's post) and the ad that started it.
    post_media_id: Mapped[str | None] = mapped_column(String(64))
    ad_id: Mapped[str | None] = mapped_column(String(64))
    ad_title: Mapped[str | None] = mapped_column(Text)
    first_customer_ms: Mapped[int | None] = mapped_column(BigInteger)
    # The first reply by a person (staff in the inbox or the owner's Instagram app) after it.
    first_response_ms: Mapped[int | None] = mapped_column(BigInteger)
    # Seconds between the two, counting only the account's business hours.
    response_seconds: Mapped[int | None] = mapped_column(Integer)
    responder_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))


class InsightSlot(db.Model):
    """Messages in one 15 minutes of one account: customer messages (user 0) and replies per person.

    `user_id` 0 holds customer messages and replies from the owner's Instagram app; a staff
    user's row holds the replies they sent from the inbox.
    """

    __tablename__ = "insight_slots"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    customer_messages: Mapped[int] = mapped_column(Integer, default=0)
    replies: Mapped[int] = mapped_column(Integer, default=0)


class SaleOutcome(db.Model):
    """A conversation marked Sold (product, quantity, amount) or Not sold (a reason); the latest is current."""

    __tablename__ = "sale_outcomes"
    __table_args__ = (
        Index("ix_sale_outcomes_conversation", "conversation_id", "id"),
        Index("ix_sale_outcomes_current", "account_id", "is_current", "marked_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(16))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    quantity: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(Text)
    # False once a later outcome (or "clear") replaced it: the history stays.
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    marked_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
