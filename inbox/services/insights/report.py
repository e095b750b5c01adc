"""The figures of the Insights page for one account and period (read after `facts.refresh`).

Every figure is for local days of the account's time zone. Definitions (also on the page):

- conversations started: by the local day of their first message, split by source;
- first response: conversations whose first customer message falls in the period, by that
  day; median (the middle value, the mean of the two middle ones for an even count) and
  90th percentile (nearest rank) of the response time in business seconds; "within 1 hour"
  is the share answered within an hour of business time, of those answered plus those
  still waiting after more than an hour of business time (a conversation still inside its
  first business hour is not counted yet);
- products: conversations started in the period by their current product; comments in the
  period on posts linked to the product; sales (the current Sold outcome, whenever it was
  marked) of the conversations started in the period, by the product sold;
- top posts and ads: conversations started in the period by a shared post, a comment on a
  post, or an ad; of those, how many are marked Sold now and for how much (the totals'
  sales count the same way: conversations started in the period → sales);
- heatmap: customer messages per local weekday and hour;
- people: replies sent in the period, and the median first response of the conversations
  each person answered first.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import and_, case, false, func, literal_column, select, tuple_

from ...extensions import db
from ...models import (Comment, Conversation, ConversationEvent, ConversationFact, InsightSlot, Membership, Post, PostProduct, Product,
                       SaleOutcome, StaffUser, ms_to_datetime, utcnow)
from ...models.insights import CONVERSATION_SOURCES, SLOT_MS
from . import facts, hours
from .hours import Period

SOURCE_LABELS = {
    "dm": "Direct message", "post": "Shared post or reel", "ad": "Ad", "story": "Story reply or mention",
    "comment": "Comment (private reply)",
}
WITHIN = 3600
PRESETS = (7, 30, 90)
MAX_DAYS = 366
TOP = 10


class PeriodError(ValueError):
    """A custom period that cannot be shown (the message says why)."""


@dataclass
class ResponseDay:
    day: date
    answered: int
    median: float | None
    p90: float | None


@dataclass
class Summary:
    """The totals compared with the previous period."""

    started: int = 0
    customer_messages: int = 0
    answered: int = 0
    median: float | None = None
    p90: float | None = None
    within_hour: int = 0
    counted: int = 0
    waiting: int = 0
    sold: int = 0
    not_sold: int = 0
    amount: Decimal = Decimal("0.00")

    @property
    def within_share(self) -> float | None:
        return self.within_hour / self.counted if self.counted else None


@dataclass
class ProductRow:
    product: Product
    conversations: int = 0
    comments: int = 0
    sold: int = 0
    quantity: int = 0
    amount: Decimal = Decimal("0.00")


@dataclass
class SourceRow:
    key: str
    label: str
    post: Post | None
    conversations: int = 0
    sold: int = 0
    amount: Decimal = Decimal("0.00")


@dataclass
class PersonRow:
    user_id: int
    name: str
    replies: int = 0
    answered_first: int = 0
    median: float | None = None
    done: int = 0


@dataclass
class Report:
    account_id: int
    period: Period
    currency: str
    started: dict[date, dict[str, int]]
    started_by_source: dict[str, int]
    response_days: list[ResponseDay]
    summary: Summary
    previous: Summary
    products: list[ProductRow]
    top_posts: list[SourceRow]
    top_ads: list[SourceRow]
    heatmap: list[list[int]]
    people: list[PersonRow]
    has_schedule: bool
    timezone: str
    generated_at: datetime = field(default_factory=utcnow)

    @property
    def days(self) -> list[date]:
        return self.period.days


def parse_period(tz_name: str, preset: str | None, first: str | None, last: str | None,
                 today: date | None = None) -> Period:
    """7, 30 or 90 days ending today (local), or a custom first..last; bad input raises PeriodError."""
    tz = hours.zone(tz_name)
    today = today or utcnow().astimezone(tz).date()
    if first or last:
        try:
            a, b = date.fromisoformat((first or "").strip()), date.fromisoformat((last or "").strip())
        except ValueError as exc:
            raise PeriodError("Dates must look like 2026-11-30.") from exc
        if b < a:
            raise PeriodError("The period must end on or after its first day.")
        if (b - a).days + 1 > MAX_DAYS:
            raise PeriodError(f"A period can be at most {MAX_DAYS} days.")
        return Period(a, b, tz_name)
    try:
        n = int(preset or 30)
    except ValueError:
        n = 30
    n = n if n in PRESETS else 30
    return Period(today - timedelta(days=n - 1), today, tz_name)


def median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)])


def build(account_id: int, period: Period, *, max_age: float = 0, now: datetime | None = None) -> Report:
    """Every figure of the page for the period (the facts refreshed first unless younger than max_age seconds)."""
    facts.refresh(account_id, max_age=max_age)
    settings = facts.settings_for(account_id)
    schedule = hours.schedule_from_json(settings.business_hours)
    now = now or utcnow()
    started, by_source = _started(account_id, period)
    response_days, summary, first_by_user = _responses(account_id, period, schedule, now)
    previous = _responses(account_id, period.previous(), schedule, now, details=False)[1]
    summary.started = sum(by_source.values())
    previous.started = sum(_started(account_id, period.previous())[1].values())
    heatmap, summary.customer_messages = _heatmap(account_id, period)
    previous.customer_messages = _customer_messages(account_id, period.previous())
    _sales_totals(account_id, period, summary)
    _sales_totals(account_id, period.previous(), previous)
    return Report(
        account_id=account_id, period=period, currency=settings.currency, started=started,
        started_by_source=by_source, response_days=response_days, summary=summary, previous=previous,
        products=_products(account_id, period), top_posts=_top(account_id, period, "post"),
        top_ads=_top(account_id, period, "ad"), heatmap=heatmap,
        people=_people(account_id, period, first_by_user), has_schedule=schedule is not None,
        timezone=settings.timezone,
    )


def _started(account_id: int, period: Period) -> tuple[dict[date, dict[str, int]], dict[str, int]]:
    F = ConversationFact
    counts: dict[date, dict[str, int]] = defaultdict(dict)
    for day, source, n in db.session.execute(
            select(F.started_day, F.source, func.count())
            .where(F.account_id == account_id, F.started_ms >= period.start_ms, F.started_ms < period.end_ms)
            .group_by(F.started_day, F.source)):
        counts[day][source] = n
    started = {day: {s: counts.get(day, {}).get(s, 0) for s in CONVERSATION_SOURCES} for day in period.days}
    totals = {s: sum(d[s] for d in started.values()) for s in CONVERSATION_SOURCES}
    return started, totals


def _first_customer_in(period: Period) -> list:
    F = ConversationFact
    return [F.first_customer_ms >= period.start_ms, F.first_customer_ms < period.end_ms]


def _percentiles(account_id: int, period: Period, *, details: bool) -> tuple[tuple | None, dict, dict]:
    """(total, per local day, per responder) as (median, p90, count) of answered response seconds.

    PostgreSQL computes all three in one pass (GROUPING SETS; percentile_cont(0.5) is the
    median, percentile_disc(0.9) the nearest-rank 90th percentile); elsewhere the values are
    read once and computed here, the same way. Without details only the total.
    """
    F = ConversationFact
    where = [F.account_id == account_id, *_first_customer_in(period), F.response_seconds.is_not(None)]
    day, user = F.first_customer_day, func.coalesce(F.responder_user_id, literal_column("0"))
    total, per_day, per_user = None, {}, {}
    if db.session.get_bind().dialect.name == "postgresql":
        stats = (func.percentile_cont(0.5).within_group(F.response_seconds),
                 func.percentile_disc(0.9).within_group(F.response_seconds), func.count())
        if not details:
            m, p, n = db.session.execute(select(*stats).where(*where)).one()
            return ((float(m), float(p), n) if n else None), {}, {}
        for d, u, grouping, m, p, n in db.session.execute(
                select(day, user, func.grouping(day, user), *stats).where(*where)
                .group_by(func.grouping_sets(tuple_(day), tuple_(user), literal_column("()")))):
            if not n:  # the grand total of no rows
                continue
            value = (float(m), float(p), n)
            if grouping == 1:
                per_day[d] = value
            elif grouping == 2:
                per_user[u] = value
            else:
                total = value
        return total, per_day, per_user
    days, users, values = defaultdict(list), defaultdict(list), []
    for d, u, seconds in db.session.execute(select(day, user, F.response_seconds).where(*where)):
        days[d].append(seconds)
        users[u].append(seconds)
        values.append(seconds)

    def stats_of(v: list) -> tuple:
        return median(v), p90(v), len(v)
    total = stats_of(values) if values else None
    if details:
        per_day = {k: stats_of(v) for k, v in days.items()}
        per_user = {k: stats_of(v) for k, v in users.items()}
    return total, per_day, per_user


def _responses(account_id: int, period: Period, schedule, now: datetime, *, details: bool = True):
    F = ConversationFact
    summary = Summary()
    recent_ms = int((now - timedelta(days=8)).timestamp() * 1000)
    # Unanswered: over an hour of business time counts against "within 1 hour"; younger ones wait.
    # Older than 8 days is surely over an hour when the week holds an hour of business time.
    weekly_hour = schedule is None or _weekly_minutes(schedule) >= WITHIN // 60
    old_unanswered = and_(F.response_seconds.is_(None), F.first_customer_ms < recent_ms) if weekly_hour else false()
    answered, within, old = db.session.execute(
        select(func.count(F.response_seconds),
               func.coalesce(func.sum(case((F.response_seconds <= WITHIN, 1), else_=0)), 0),
               func.coalesce(func.sum(case((old_unanswered, 1), else_=0)), 0))
        .where(F.account_id == account_id, *_first_customer_in(period))).one()
    summary.answered, summary.within_hour, summary.counted = answered, int(within), answered + int(old)
    unanswered = [F.account_id == account_id, *_first_customer_in(period), F.response_seconds.is_(None)]
    if weekly_hour:
        unanswered.append(F.first_customer_ms >= recent_ms)
    tz = period.tz
    for (first_ms,) in db.session.execute(select(F.first_customer_ms).where(*unanswered)):
        if _waited_over_hour(ms_to_datetime(first_ms), now, tz, schedule):
            summary.counted += 1
        else:
            summary.waiting += 1
    total, per_day, by_user = _percentiles(account_id, period, details=details)
    summary.median, summary.p90 = (total[0], total[1]) if total else (None, None)
    if not details:
        return [], summary, {}
    days = [ResponseDay(day, *(lambda m: (m[2], m[0], m[1]) if m else (0, None, None))(per_day.get(day)))
            for day in period.days]
    return days, summary, by_user


def _weekly_minutes(schedule) -> int:
    return sum(b - a for spans in schedule.values() for a, b in spans)


def _waited_over_hour(start: datetime, now: datetime, tz, schedule) -> bool:
    if now - start <= timedelta(seconds=WITHIN):
        return False
    # A week and a day holds every weekly schedule's hours once: enough to know "over an hour".
    return hours.business_seconds(start, min(now, start + timedelta(days=8)), tz, schedule) > WITHIN


def _slot_range(period: Period):
    lo, hi = period.start_ms // SLOT_MS, period.end_ms // SLOT_MS
    return InsightSlot.slot >= lo, InsightSlot.slot < hi


def _heatmap(account_id: int, period: Period) -> tuple[list[list[int]], int]:
    S = InsightSlot
    grid = [[0] * 24 for _ in range(7)]
    total = 0
    tz = period.tz
    offsets: dict[int, int] = {}  # UTC hour → the zone's offset in ms then (read once per hour)
    for slot, count in db.session.execute(
            select(S.slot, S.customer_messages).where(S.account_id == account_id, S.user_id == 0,
                                                      S.customer_messages > 0, *_slot_range(period))):
        at = slot * SLOT_MS
        hour_key = at // 3_600_000
        if hour_key not in offsets:
            moment = datetime.fromtimestamp(hour_key * 3600, tz=timezone.utc)
            offsets[hour_key] = int(moment.astimezone(tz).utcoffset().total_seconds() * 1000)
        local_ms = at + offsets[hour_key]
        # 1 January 1970 was a Thursday (weekday 3).
        grid[(local_ms // 86_400_000 + 3) % 7][local_ms // 3_600_000 % 24] += count
        total += count
    return grid, total


def _customer_messages(account_id: int, period: Period) -> int:
    S = InsightSlot
    return int(db.session.scalar(select(func.coalesce(func.sum(S.customer_messages), 0))
                                 .where(S.account_id == account_id, S.user_id == 0, *_slot_range(period))) or 0)


def _cohort(period: Period):
    """Sales outcomes count for the conversations started in the period (conversations → sales)."""
    F = ConversationFact
    return and_(F.conversation_id == SaleOutcome.conversation_id, F.account_id == SaleOutcome.account_id,
                F.started_ms >= period.start_ms, F.started_ms < period.end_ms)


def _sales_totals(account_id: int, period: Period, summary: Summary) -> None:
    O = SaleOutcome
    for outcome, count, amount in db.session.execute(
            select(O.outcome, func.count(), func.coalesce(func.sum(O.amount), 0))
            .join(ConversationFact, _cohort(period))
            .where(O.account_id == account_id, O.is_current.is_(True)).group_by(O.outcome)):
        if outcome == "sold":
            summary.sold, summary.amount = count, Decimal(amount).quantize(Decimal("0.01"))
        else:
            summary.not_sold = count


def _products(account_id: int, period: Period) -> list[ProductRow]:
    F, C, O = ConversationFact, Conversation, SaleOutcome
    rows: dict[int, ProductRow] = {}
    products = {p.id: p for p in db.session.scalars(select(Product).where(Product.account_id == account_id))}

    def row(pid: int) -> ProductRow:
        return rows.setdefault(pid, ProductRow(products[pid]))

    for pid, count in db.session.execute(
            select(C.product_id, func.count()).join(F, F.conversation_id == C.id)
            .where(F.account_id == account_id, C.account_id == account_id, C.product_id.is_not(None),
                   F.started_ms >= period.start_ms, F.started_ms < period.end_ms).group_by(C.product_id)):
        row(pid).conversations = count
    start, end = period.start_ms, period.end_ms
    for pid, count in db.session.execute(
            select(PostProduct.product_id, func.count()).join(Comment, Comment.post_id == PostProduct.post_id)
            .where(Comment.account_id == account_id, PostProduct.account_id == account_id,
                   Comment.is_own.is_(False), Comment.meta_timestamp >= start, Comment.meta_timestamp < end)
            .group_by(PostProduct.product_id)):
        row(pid).comments = count
    for pid, count, quantity, amount in db.session.execute(
            select(O.product_id, func.count(), func.coalesce(func.sum(O.quantity), 0),
                   func.coalesce(func.sum(O.amount), 0))
            .join(ConversationFact, _cohort(period))
            .where(O.account_id == account_id, O.is_current.is_(True), O.outcome == "sold",
                   O.product_id.is_not(None)).group_by(O.product_id)):
        r = row(pid)
        r.sold, r.quantity, r.amount = count, int(quantity), Decimal(amount).quantize(Decimal("0.01"))
    return sorted(rows.values(), key=lambda r: (-r.conversations, -r.sold, -r.comments, r.product.name.lower()))


def _top(account_id: int, period: Period, kind: str) -> list[SourceRow]:
    F, O = ConversationFact, SaleOutcome
    key = F.post_media_id if kind == "post" else F.ad_id
    where = [F.account_id == account_id, F.started_ms >= period.start_ms, F.started_ms < period.end_ms,
             key.is_not(None)]
    where.append(F.source.in_(("post", "comment")) if kind == "post" else F.source == "ad")
    counts = db.session.execute(select(key, func.count(), func.max(F.post_media_id), func.max(F.ad_title))
                                .where(*where).group_by(key).order_by(func.count().desc(), key).limit(TOP)).all()
    if not counts:
        return []
    keys = [k for k, *_ in counts]
    sales = {k: (n, a) for k, n, a in db.session.execute(
        select(key, func.count(), func.coalesce(func.sum(O.amount), 0)).join(O, O.conversation_id == F.conversation_id)
        .where(*where, key.in_(keys), O.is_current.is_(True), O.outcome == "sold").group_by(key))}
    media = {k: (k if kind == "post" else post) for k, _, post, _ in counts}
    by_media = {p.media_id: p for p in db.session.scalars(
        select(Post).where(Post.account_id == account_id, Post.media_id.in_([m for m in media.values() if m])))}
    posts = {k: by_media.get(m) for k, m in media.items()}
    titles = {k: title for k, _, _, title in counts} if kind == "ad" else {}
    out = []
    for k, count, *_ in counts:
        post = posts.get(k)
        label = titles.get(k) or (" ".join((post.caption or "").split())[:80] if post is not None else "") or \
            (f"Ad {k}" if kind == "ad" else f"Post {k}")
        sold, amount = sales.get(k, (0, 0))
        out.append(SourceRow(k, label, post, count, sold, Decimal(amount).quantize(Decimal("0.01"))))
    return out


def _people(account_id: int, period: Period, first_by_user: dict[int, tuple]) -> list[PersonRow]:
    S = InsightSlot
    replies = dict(db.session.execute(
        select(S.user_id, func.sum(S.replies)).where(S.account_id == account_id, S.replies > 0, *_slot_range(period))
        .group_by(S.user_id)).all())
    # Conversations each person marked done in the period, from the activity line.
    done = dict(db.session.execute(
        select(ConversationEvent.actor_user_id, func.count()).where(
            ConversationEvent.account_id == account_id, ConversationEvent.kind == "done",
            ConversationEvent.actor_user_id.is_not(None),
            ConversationEvent.created_at >= ms_to_datetime(period.start_ms),
            ConversationEvent.created_at < ms_to_datetime(period.end_ms))
        .group_by(ConversationEvent.actor_user_id)).all())
    members = dict(db.session.execute(
        select(StaffUser.id, func.coalesce(func.nullif(StaffUser.name, ""), StaffUser.email))
        .join(Membership, Membership.user_id == StaffUser.id).where(Membership.account_id == account_id)).all())
    others = set(replies) | set(first_by_user) | set(done)
    former = [u for u in others if u and u not in members]
    named = dict(db.session.execute(
        select(StaffUser.id, func.coalesce(func.nullif(StaffUser.name, ""), StaffUser.email))
        .where(StaffUser.id.in_(former))).all()) if former else {}
    out = []
    for uid in sorted(set(members) | others, key=lambda u: (u == 0, (members.get(u) or named.get(u) or "").lower())):
        name = "Owner's Instagram app" if uid == 0 else members.get(uid) or named.get(uid) or "Former staff"
        m = first_by_user.get(uid)
        out.append(PersonRow(uid, name, int(replies.get(uid, 0) or 0), m[2] if m else 0, m[0] if m else None,
                             int(done.get(uid, 0))))
    return [p for p in out if p.user_id in members or p.replies or p.answered_first or p.done]
