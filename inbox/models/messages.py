"""Messages, their attachments and reactions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .comments import Comment
from .types import BigId, Json, UTCDateTime, utcnow

DIRECTIONS = ("in", "out")
SENDER_KINDS = ("customer", "staff", "instagram_app", "automation")
OUTGOING_STATUSES = ("pending", "sent", "failed", "seen")
ATTACHMENT_TYPES = (
    "image", "video", "audio", "file", "ig_post", "share", "ig_reel", "reel", "story_mention",
    "ig_story", "ephemeral", "fallback", "template", "sticker", "unknown",
)
MEDIA_STATES = ("pending", "stored", "expired", "too_large", "refused", "failed", "not_kept")


class Message(db.Model):
    """One Instagram message, incoming or outgoing."""

    __tablename__ = "messages"
    __table_args__ = (
        # NULL mids (pending sends) are distinct on both SQLite and PostgreSQL.
        UniqueConstraint("account_id", "mid"),
        Index("ix_messages_thread", "conversation_id", "meta_timestamp", "id"),
        Index("uq_messages_comment_id", "comment_id", unique=True),
        # Insights: what changed since the last refresh, and the messages of a 15-minute slot (migration insights).
        Index("ix_messages_account_updated", "account_id", "updated_at"),
        Index("ix_messages_account_time", "account_id", "meta_timestamp"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    mid: Mapped[str | None] = mapped_column(String(512))
    direction: Mapped[str] = mapped_column(String(8))
    sender_kind: Mapped[str] = mapped_column(String(16))
    # The Instagram id that sent it (customer IGSID, or the account's id for outgoing).
    sender_igsid: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str | None] = mapped_column(Text)
    reply_to_mid: Mapped[str | None] = mapped_column(String(512))
    reply_to_story_id: Mapped[str | None] = mapped_column(String(64))
    reply_to_story_url: Mapped[str | None] = mapped_column(Text)
    quick_reply_payload: Mapped[str | None] = mapped_column(Text)
    postback_payload: Mapped[str | None] = mapped_column(Text)
    referral: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # A private reply: the comment it answers (Meta allows one per comment, so this is unique).
    # No ON DELETE: comment rows are marked deleted, never removed, except with their account.
    comment_id: Mapped[int | None] = mapped_column(ForeignKey("comments.id"))
    is_unsupported: Mapped[bool] = mapped_column(Boolean, default=False)
    # Outgoing only.
    status: Mapped[str | None] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    sent_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    client_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    send_attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Unsend leaves a tombstone; edits keep their count and the earlier texts.
    is_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    edit_count: Mapped[int] = mapped_column(Integer, default=0)
    previous_texts: Mapped[list[str] | None] = mapped_column(Json)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Meta's timestamp in ms orders the thread.
    meta_timestamp: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", order_by="Attachment.position", cascade="all, delete-orphan"
    )
    reactions: Mapped[list[Reaction]] = relationship(back_populates="message", cascade="all, delete-orphan")
    comment: Mapped[Comment | None] = relationship(lazy="select")


class Attachment(db.Model):
    """One attachment of a message, with the raw payload kept and the stored copy's state."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    type: Mapped[str] = mapped_column(String(32))
    raw: Mapped[dict[str, Any] | None] = mapped_column(Json)
    source_url: Mapped[str | None] = mapped_column(Text)
    # The Instagram media id a share, post, reel or story refers to.
    media_id: Mapped[str | None] = mapped_column(String(64), index=True)
    title: Mapped[str | None] = mapped_column(Text)
    storage_key: Mapped[str | None] = mapped_column(String(255))
    media_state: Mapped[str | None] = mapped_column(String(16))
    content_type: Mapped[str | None] = mapped_column(String(128))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    filename: Mapped[str | None] = mapped_column(String(255))
    media_error: Mapped[str | None] = mapped_column(Text)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    message: Mapped[Message] = relationship(back_populates="attachments")


class Reaction(db.Model):
    """One person's reaction to one message (Instagram keeps one per person)."""

    __tablename__ = "reactions"
    __table_args__ = (UniqueConstraint("message_id", "reactor_igsid"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    reactor_igsid: Mapped[str] = mapped_column(String(64))
    reaction: Mapped[str | None] = mapped_column(String(32))
    emoji: Mapped[str | None] = mapped_column(String(32))
    meta_timestamp: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    message: Mapped[Message] = relationship(back_populates="reactions")
