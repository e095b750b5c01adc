"""Instagram comments on the account's media, and the keyword automations that answer them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import BigId, Json, UTCDateTime, utcnow

COMMENT_FIELDS = ("comments", "live_comments", "mentions")
# What is in flight for a comment: a public reply we wrote (on its own row), hide, unhide, delete.
COMMENT_ACTIONS = ("reply", "hide", "unhide", "delete")
AUTOMATION_OUTCOMES = ("fired", "skipped", "failed")


class Comment(db.Model):
    """One Instagram comment (or reply to one) on the account's media, ours included.

    A public reply typed in the inbox is a row of its own from the start (`is_own`, no
    `comment_id` until the Comments API answers); the webhook of that reply then finds it.
    A private reply is the outgoing Message whose `comment_id` points here (one at most).
    """

    __tablename__ = "comments"
    __table_args__ = (
        # NULL comment ids (our replies not answered yet) are distinct on both databases.
        UniqueConstraint("account_id", "comment_id"),
        Index("ix_comments_post", "account_id", "post_id", "meta_timestamp"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    comment_id: Mapped[str | None] = mapped_column(String(64))
    # comments, live_comments or mentions (a comment elsewhere that @mentions the account).
    field: Mapped[str] = mapped_column(String(16), default="comments")
    media_id: Mapped[str | None] = mapped_column(String(64))
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="SET NULL"))
    # The Instagram id of the comment this one answers (None: a top-level comment).
    parent_comment_id: Mapped[str | None] = mapped_column(String(64))
    author_igsid: Mapped[str | None] = mapped_column(String(64))
    author_username: Mapped[str | None] = mapped_column(String(255))
    is_own: Mapped[bool] = mapped_column(Boolean, default=False)
    # Own comments: staff, automation (written here) or instagram_app (written elsewhere).
    sender_kind: Mapped[str | None] = mapped_column(String(16))
    sent_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    automation_id: Mapped[int | None] = mapped_column(ForeignKey("automations.id", ondelete="SET NULL"))
    text: Mapped[str | None] = mapped_column(Text)
    previous_texts: Mapped[list[str] | None] = mapped_column(Json)
    edit_count: Mapped[int] = mapped_column(Integer, default=0)
    media_product_type: Mapped[str | None] = mapped_column(String(32))
    ad_id: Mapped[str | None] = mapped_column(String(64))
    ad_title: Mapped[str | None] = mapped_column(Text)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_read: Mapped[bool] = mapped_column(Boolean, default=False)
    # Our public replies: pending, sent or failed (None for everyone else's comments).
    status: Mapped[str | None] = mapped_column(String(16))
    # The action in flight (COMMENT_ACTIONS), and why the last one failed.
    action: Mapped[str | None] = mapped_column(String(16))
    action_error: Mapped[str | None] = mapped_column(Text)
    # Meta's time in ms (comment webhooks carry seconds); orders the thread.
    meta_timestamp: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Automation(db.Model):
    """An account's keyword rule: a comment that matches gets a private reply (and maybe a public one)."""

    __tablename__ = "automations"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Words, phrases or emoji, one per line or comma-separated.
    keywords: Mapped[str] = mapped_column(Text, default="")
    all_posts: Mapped[bool] = mapped_column(Boolean, default=True)
    media_ids: Mapped[list[str] | None] = mapped_column(Json)
    private_template: Mapped[str] = mapped_column(Text, default="")
    public_replies: Mapped[list[str] | None] = mapped_column(Json)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AutomationRun(db.Model):
    """One firing (or refusal) of a rule for one comment: the rule's history and the comment's note."""

    __tablename__ = "automation_runs"
    __table_args__ = (UniqueConstraint("automation_id", "comment_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    automation_id: Mapped[int] = mapped_column(ForeignKey("automations.id", ondelete="CASCADE"))
    comment_id: Mapped[int] = mapped_column(ForeignKey("comments.id", ondelete="CASCADE"), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    reply_comment_id: Mapped[int | None] = mapped_column(ForeignKey("comments.id", ondelete="SET NULL"))
    details: Mapped[dict[str, Any] | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
