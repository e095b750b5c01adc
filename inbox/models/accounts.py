"""Connected Instagram accounts, the staff who work them, and their roles."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, false, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import UTCDateTime, utcnow

# "disconnected": the owner removed the app on Instagram (Meta's deauthorize callback); token dropped.
ACCOUNT_STATUSES = ("active", "reconnect_needed", "disabled", "disconnected")
ROLES = ("admin", "agent")


class Account(db.Model):
    """An Instagram professional account connected to the inbox."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The professional account id: webhook entry.id and /me user_id (not /me id).
    ig_user_id: Mapped[str] = mapped_column(String(64), unique=True)
    username: Mapped[str] = mapped_column(String(255), default="")
    name: Mapped[str | None] = mapped_column(String(255))
    profile_pic_url: Mapped[str | None] = mapped_column(Text)
    # "instagram": Instagram Login (graph.instagram.com); "facebook": Page-based.
    api_flavour: Mapped[str] = mapped_column(String(16), default="instagram")
    page_id: Mapped[str | None] = mapped_column(String(64))
    access_token_encrypted: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    token_refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(32), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text)
    webhook_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    webhook_fields: Mapped[str | None] = mapped_column(Text)
    # The app-scoped id Business Login gave (what Meta's data-deletion and deauthorize callbacks name).
    app_user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # Delete messages and attachments older than this many days (None: keep everything).
    retention_days: Mapped[int | None] = mapped_column(Integer)
    # Replying to an unassigned conversation assigns it to whoever replied.
    assign_on_reply: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # New conversations go round-robin to agents who are online and not away.
    auto_assign: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    memberships: Mapped[list[Membership]] = relationship(back_populates="account", cascade="all, delete-orphan")

    @property
    def label(self) -> str:
        return f"@{self.username}" if self.username else f"Account {self.ig_user_id}"

    def __repr__(self) -> str:
        return f"<Account {self.id} {self.ig_user_id} @{self.username}>"


class StaffUser(UserMixin, db.Model):
    """A person who logs in to the inbox."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    # Site administrators connect accounts and manage staff; roles per account are memberships.
    is_superadmin: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped on password change so other sessions of the user end (Flask-Login alternative id).
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    # "Away": round-robin skips them (a status each person sets).
    away: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    @property
    def display_name(self) -> str:
        return self.name or self.email

    def __repr__(self) -> str:
        return f"<StaffUser {self.id} {self.email}>"


class Membership(db.Model):
    """A staff user's role on one account."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "account_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16), default="agent")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[StaffUser] = relationship(back_populates="memberships")
    account: Mapped[Account] = relationship(back_populates="memberships")
