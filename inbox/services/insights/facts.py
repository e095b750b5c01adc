"""Keeping the Insights facts up to date: per-conversation facts and 15-minute activity slots.

The page reads two small tables instead of two million messages: `insight_conversations`
(when and how each conversation started, when it was first answered and by whom, the
response time in business seconds) and `insight_slots` (customer messages and replies per
person per 15 minutes of UTC). `refresh(account_id)` folds in every message whose row
changed since the account's watermark (`InsightSettings.refreshed_through`, read back
`OVERLAP` earlier so a message written in a transaction that committed a little after
its rows were stamped is not missed): the conversations
those messages belong to are recomputed whole, and so are the slots they fall in. It runs
under a lock on the settings row (one refresh per account at a time) and is cheap when
nothing changed: the Insights page and the export call it first. The first refresh of an
account (or `flask --app inbox insights rebuild`) computes everything.

Changing the time zone or the business hours recomputes every stored local day and response time
(`facts_key` remembers what they were computed with).

Definitions: a conversation starts at its first message; its source is read from that
message if it is a private reply to a comment, else from the customer's first message
(an ad referral, a shared post or reel, a story reply or mention, else a plain DM). The
first response is the first outgoing message after the customer's first message that a
person sent (staff from the inbox or the owner's Instagram app; automations do not
count; failed sends do not count).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import timedelta

from flask import current_app
from sqlalchemy import BigInteger, Integer, and_, case, delete, func, insert, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import selectinload

from ...extensions import db
from ...queue import enqueue
from ...models import (Conversation, ConversationFact, InsightSettings, InsightSlot, Message, ms_to_datetime,
                       utcnow)
from ...models.insights import SLOT_MS
from . import hours

OVERLAP = timedelta(seconds=10)
CHUNK = 500
HUMAN_KINDS = ("staff", "instagram_app")
POST_TYPES = ("ig_post", "share", "ig_reel", "reel")
STORY_TYPES = ("story_mention", "ig_story")


def slot_of(column):
    """The 15-minute slot of a ms column (an inlined constant: PostgreSQL's GROUP BY must see the same expression)."""
    return column // literal_column(str(SLOT_MS), BigInteger)


def settings_for(account_id: int) -> InsightSettings:
    """The account's insight settings, created with the defaults if missing (in the caller's transaction)."""
    row = db.session.get(InsightSettings, account_id)
    if row is not None:
        return row
    builder = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    db.session.execute(builder(InsightSettings).values(account_id=account_id, timezone="UTC", currency="EUR",
                                                       updated_at=utcnow()).on_conflict_do_nothing())
    return db.session.get(InsightSettings, account_id)


def first_build_pending(account_id: int) -> bool:
    """True while a large account's first build runs in the worker (queued here if it is not yet).

    A first build reads every message: small accounts do it inside the request, large ones
    (more than INSIGHTS_INLINE_FIRST_BUILD conversations) in the `build_insights` job.
    """
    settings = settings_for(account_id)
    db.session.commit()
    if settings.refreshed_through is not None:
        return False
    limit = current_app.config["INSIGHTS_INLINE_FIRST_BUILD"]
    count = db.session.scalar(select(func.count()).select_from(
        select(Conversation.id).where(Conversation.account_id == account_id).limit(limit + 1).subquery()))
    if count <= limit:
        return False
    enqueue("inbox.tasks.build_insights", account_id, queue="low", timeout=3600)
    return True


def facts_key(settings: InsightSettings) -> str:
    raw = json.dumps([settings.timezone, settings.business_hours], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def refresh(account_id: int, *, full: bool = False, max_age: float = 0) -> None:
    """Fold every message changed since the last refresh into the account's facts and slots; commit.

    With max_age, a refresh younger than that many seconds (same time zone and hours) is enough.
    """
    current = settings_for(account_id)
    if (max_age and not full and current.refreshed_through is not None and current.facts_key == facts_key(current)
            and utcnow() - current.refreshed_through < timedelta(seconds=max_age)):
        return
    settings = db.session.scalars(select(InsightSettings).where(InsightSettings.account_id == account_id)
                                  .with_for_update().execution_options(populate_existing=True)).one()
    now = utcnow()
    tz = hours.zone(settings.timezone)
    schedule = hours.schedule_from_json(settings.business_hours)
    key = facts_key(settings)
    since = None if full or settings.refreshed_through is None else settings.refreshed_through - OVERLAP
    M = Message
    if since is None:
        conversation_ids = list(db.session.scalars(select(Conversation.id).where(Conversation.account_id == account_id)))
        db.session.execute(delete(ConversationFact).where(ConversationFact.account_id == account_id))
        db.session.execute(delete(InsightSlot).where(InsightSlot.account_id == account_id))
        _write_slots(account_id, None)
    else:
        changed = and_(M.account_id == account_id, M.updated_at > since)
        conversation_ids = list(db.session.scalars(select(M.conversation_id).where(changed).distinct()))
        slots = list(db.session.scalars(select(slot_of(M.meta_timestamp)).where(changed).distinct()))
        for chunk in _chunks(sorted(slots)):
            db.session.execute(delete(InsightSlot).where(InsightSlot.account_id == account_id,
                                                         InsightSlot.slot.in_(chunk)))
            _write_slots(account_id, chunk)
    for chunk in _chunks(conversation_ids):
        _write_facts(account_id, chunk, tz, schedule, replace=since is not None)
    if since is not None and settings.facts_key != key:
        recompute_local(account_id, tz, schedule)
    settings.facts_key = key
    settings.refreshed_through = now
    db.session.commit()


def recompute_local(account_id: int, tz, schedule) -> None:
    """Every stored local day and response time again, with the account's current time zone and hours."""
    F = ConversationFact
    rows = db.session.execute(select(F.conversation_id, F.started_ms, F.first_customer_ms, F.first_response_ms)
                              .where(F.account_id == account_id)).all()
    values = [{"conversation_id": cid, "started_day": local_day(started, tz),
               "first_customer_day": local_day(first, tz) if first is not None else None,
               "response_seconds": hours.business_seconds(ms_to_datetime(first), ms_to_datetime(answered), tz, schedule)
               if answered is not None else None}
              for cid, started, first, answered in rows]
    for chunk in _chunks(values, 2000):
        db.session.execute(update(ConversationFact), chunk)


def local_day(ms: int, tz):
    return ms_to_datetime(ms).astimezone(tz).date()


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _runs(slots: list[int]) -> list[tuple[int, int]]:
    """Sorted slot numbers as (first, last) runs of consecutive ones."""
    out: list[tuple[int, int]] = []
    for slot in sorted(slots):
        if out and slot == out[-1][1] + 1:
            out[-1] = (out[-1][0], slot)
        else:
            out.append((slot, slot))
    return out


def _human_reply(M=Message):
    return and_(M.direction == "out", M.sender_kind.in_(HUMAN_KINDS), func.coalesce(M.status, "") != "failed")


def _write_slots(account_id: int, slots: list[int] | None) -> None:
    """Count the messages of these slots (all of the account's without a list) and insert the rows."""
    M = Message
    slot = slot_of(M.meta_timestamp).label("slot")
    is_in = M.direction == "in"
    user = case((is_in, 0), else_=func.coalesce(M.sent_by_user_id, 0)).label("user_id")
    where = [M.account_id == account_id, or_(is_in, _human_reply())]
    if slots is not None:
        # One index range per run of adjacent slots (an edit of an old message is a slot far away).
        where.append(or_(*(and_(M.meta_timestamp >= a * SLOT_MS, M.meta_timestamp < (b + 1) * SLOT_MS)
                           for a, b in _runs(slots))))
    counts = select(literal_column(str(account_id), Integer).label("account_id"), slot, user,
                    func.sum(case((is_in, 1), else_=0)), func.sum(case((is_in, 0), else_=1))) \
        .where(*where).group_by(slot, user)
    # Set-based: the counts go from the messages into the slots without a round trip.
    db.session.execute(insert(InsightSlot.__table__).from_select(
        ["account_id", "slot", "user_id", "customer_messages", "replies"], counts))


def _write_facts(account_id: int, conversation_ids: list[int], tz, schedule, *, replace: bool) -> None:
    M = Message
    # Every query names the chunk's conversations, so PostgreSQL reads them through the thread index.
    ids = M.conversation_id.in_(conversation_ids)
    firsts = db.session.execute(
        select(M.conversation_id, func.min(M.meta_timestamp), func.min(case((M.direction == "in", M.meta_timestamp))))
        .where(ids).group_by(M.conversation_id)).all()
    first_any = select(M.conversation_id.label("cid"), func.min(M.meta_timestamp).label("ts")) \
        .where(ids).group_by(M.conversation_id).subquery()
    first_in = select(M.conversation_id.label("cid"), func.min(M.meta_timestamp).label("ts")) \
        .where(ids, M.direction == "in").group_by(M.conversation_id).subquery()
    first_reply = select(M.conversation_id.label("cid"), func.min(M.meta_timestamp).label("ts")) \
        .join(first_in, first_in.c.cid == M.conversation_id) \
        .where(ids, _human_reply(), M.meta_timestamp >= first_in.c.ts).group_by(M.conversation_id).subquery()

    def at(sq):
        return and_(M.conversation_id == sq.c.cid, M.meta_timestamp == sq.c.ts)

    answered = dict(db.session.execute(select(first_reply.c.cid, first_reply.c.ts)).all())
    responders: dict[int, int | None] = {}
    if answered:
        for cid, user_id in db.session.execute(select(M.conversation_id, M.sent_by_user_id)
                                               .join(first_reply, at(first_reply))
                                               .where(ids, _human_reply()).order_by(M.id)):
            responders.setdefault(cid, user_id)
    openers: dict[tuple[int, int], Message] = {}
    for sq in (first_any, first_in):
        for message in db.session.scalars(
                select(M).join(sq, at(sq)).where(ids)
                .options(selectinload(M.attachments), selectinload(M.comment)).order_by(M.id)):
            openers.setdefault((message.conversation_id, message.meta_timestamp), message)
    values = []
    for cid, first_ms, first_in_ms in firsts:
        first = openers.get((cid, first_ms))
        customer = openers.get((cid, first_in_ms)) if first_in_ms is not None else None
        source, post_media_id, ad_id, ad_title = classify(first, customer)
        response_ms = answered.get(cid)
        values.append({
            "conversation_id": cid, "account_id": account_id, "started_ms": first_ms, "source": source,
            "started_day": local_day(first_ms, tz),
            "first_customer_day": local_day(first_in_ms, tz) if first_in_ms is not None else None,
            "post_media_id": post_media_id, "ad_id": ad_id, "ad_title": ad_title,
            "first_customer_ms": first_in_ms, "first_response_ms": response_ms,
            "response_seconds": (hours.business_seconds(ms_to_datetime(first_in_ms), ms_to_datetime(response_ms),
                                                        tz, schedule) if response_ms is not None else None),
            "responder_user_id": responders.get(cid) if response_ms is not None else None,
        })
    if replace:
        db.session.execute(delete(ConversationFact).where(ConversationFact.conversation_id.in_(conversation_ids)))
    if values:
        db.session.execute(insert(ConversationFact.__table__), values)


def classify(first: Message | None, customer: Message | None) -> tuple[str, str | None, str | None, str | None]:
    """(source, post media id, ad id, ad title) of a conversation from its first and first customer message."""
    if first is not None and first.comment_id is not None:
        return "comment", first.comment.media_id if first.comment is not None else None, None, None
    message = customer or first
    if message is None:
        return "dm", None, None, None
    referral = message.referral if isinstance(message.referral, dict) else None
    if referral:
        context = referral.get("ads_context_data") if isinstance(referral.get("ads_context_data"), dict) else {}
        ad_id = _id(referral.get("ad_id"))
        post_id = _id(context.get("post_id"))
        if ad_id or post_id:
            title = context.get("ad_title") if isinstance(context.get("ad_title"), str) else None
            return "ad", post_id, ad_id or post_id, (title or None) and title[:500]
    for attachment in sorted(message.attachments, key=lambda a: a.position):
        if attachment.type in POST_TYPES:
            return "post", attachment.media_id, None, None
    if message.reply_to_story_id or any(a.type in STORY_TYPES for a in message.attachments):
        return "story", None, None, None
    return "dm", None, None, None


def _id(value) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()[:64]
    return None


def update_settings(account_id: int, *, timezone: str, schedule: hours.Schedule | None, currency: str) -> None:
    """Save the account's time zone, business hours and currency; response times follow on the next refresh."""
    hours.zone(timezone)
    code = (currency or "").strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise hours.HoursError("The currency is a three-letter code like EUR.")
    settings = settings_for(account_id)
    settings.timezone = timezone
    settings.business_hours = hours.schedule_to_json(schedule)
    settings.currency = code
    db.session.commit()
