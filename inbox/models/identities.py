"""The cached profile of each participant, per Instagram account."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import UTCDateTime, utcnow


class Identity(db.Model):
    """What an account knows of one IGSID; never the account itself."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("account_id", "igsid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    igsid: Mapped[str] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    profile_pic_url: Mapped[str | None] = mapped_column(Text)
    # The stored copy of the picture (media pipeline): storage key and state.
    profile_pic_key: Mapped[str | None] = mapped_column(String(255))
    profile_pic_state: Mapped[str | None] = mapped_column(String(16))
    follower_count: Mapped[int | None] = mapped_column(Integer)
    is_user_follow_business: Mapped[bool | None] = mapped_column(Boolean)
    is_business_follow_user: Mapped[bool | None] = mapped_column(Boolean)
    is_verified_user: Mapped[bool | None] = mapped_column(Boolean)
    # Where the last good data came from: "profile" (User Profile API) or "participants" (resync).
    source: Mapped[str | None] = mapped_column(String(16))
    last_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_code: Mapped[str | None] = mapped_column(String(32))
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
