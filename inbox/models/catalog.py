"""Products, the posts customers share, the links between them, and assignment decisions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import BigId, Json, UTCDateTime, utcnow

ASSIGNMENT_OUTCOMES = ("assigned", "kept", "skipped", "ambiguous", "no_match")


class Product(db.Model):
    """An item of an account's catalogue."""

    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("account_id", "sku"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    sku: Mapped[str] = mapped_column(String(64))
    price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    # Words and phrases that identify the product in a caption, comma-separated.
    keywords: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.sku})"


class Post(db.Model):
    """An Instagram media object seen in the inbox or owned by the account."""

    __tablename__ = "posts"
    __table_args__ = (UniqueConstraint("account_id", "media_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    media_id: Mapped[str] = mapped_column(String(64))
    caption: Mapped[str | None] = mapped_column(Text)
    permalink: Mapped[str | None] = mapped_column(Text)
    thumbnail_url: Mapped[str | None] = mapped_column(Text)
    media_type: Mapped[str | None] = mapped_column(String(32))
    media_product_type: Mapped[str | None] = mapped_column(String(32))
    owner_username: Mapped[str | None] = mapped_column(String(255))
    is_own: Mapped[bool] = mapped_column(Boolean, default=False)
    # How we first learned of it: "share", "ig_reel", "ad", "own_media".
    seen_via: Mapped[str | None] = mapped_column(String(16))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    link: Mapped[PostProduct | None] = relationship(back_populates="post", uselist=False)


class PostProduct(db.Model):
    """The one product a post is linked to, by hand or automatically."""

    __tablename__ = "post_products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), unique=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    auto_linked: Mapped[bool] = mapped_column(Boolean, default=False)
    linked_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    # A human account of what made the link ("caption matched SKU RD-1").
    linked_reason: Mapped[str | None] = mapped_column(Text)
    source_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    post: Mapped[Post] = relationship(back_populates="link")
    product: Mapped[Product] = relationship()


class AssignmentEvent(db.Model):
    """One decision about a conversation's product, with its reason in plain words."""

    __tablename__ = "assignment_events"
    __table_args__ = (Index("ix_assignment_events_conversation", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    # Evidence from a comment: the comment (its time orders it against other evidence).
    comment_id: Mapped[int | None] = mapped_column(ForeignKey("comments.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    previous_product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    # What the evidence was: "ig_post", "share", "ig_reel", "ad", "product_referral", "comment", "manual".
    evidence_kind: Mapped[str | None] = mapped_column(String(32))
    evidence_id: Mapped[str | None] = mapped_column(String(64))
    candidates: Mapped[list[Any] | None] = mapped_column(Json)
    reason: Mapped[str] = mapped_column(Text, default="")
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
