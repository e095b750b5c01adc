"""Participant identities: the cached profile of each IGSID, per account.

The rules:

- One row per (account, igsid). The account's own id is never stored: every write goes
  through save_profile / save_participant / save_error, which refuse it.
- First contact: ingestion (and resync) call note_participant inside their transaction.
  When the row is missing, older than IDENTITY_TTL_SECONDS, its picture expires within
  IDENTITY_PIC_REFRESH_MARGIN_SECONDS, or a failed fetch is IDENTITY_ERROR_RETRY_SECONDS
  old, it registers a fetch_profile job for after the commit, with a deterministic job id
  so a burst of messages makes one job.
- Meta's soft refusals (unavailable, no consent, not found, no permission) are recorded
  on the row; the conversation is never touched. A dead token marks the account
  "reconnect needed" (the inbox shows it).
- "Refresh identities" refetches everyone the account talks to, as a JobRun, with
  bounded concurrency inside the account's profile rate limit (GRAPH_PROFILE_RATE).
- Profile pictures are Instagram CDN links that expire (`oe`, hex epoch): picture_url()
  never hands out an expired one, and first contact refetches before expiry.
- doctor() reports and repairs rows that break these rules (data imported from elsewhere).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from flask import current_app
from sqlalchemy import event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..display import display_name, is_fallback_name, usable_name
from ..extensions import db, on_commit
from ..live.publish import publish_after_commit
from ..models import Account, Conversation, Identity, JobRun, Message, utcnow
from ..queue import enqueue
from . import jobruns, media
from .accounts import mark_reconnect_needed
from .graph import (
    ConsentRequired, GraphClient, GraphError, NotFound, PermissionDenied, RateLimited, TokenInvalid, Transient,
    UserUnavailable,
)

log = logging.getLogger(__name__)

REFRESH = "refresh_identities"
MAX_SUMMARY_ERRORS = 20
# A throttle longer than this during a refresh fails that participant instead of stalling the run.
MAX_REFRESH_WAIT_SECONDS = 60.0


class SelfIdentityError(ValueError):
    """Refused: the account itself is never one of its participants."""


# --- What Meta says about a person --------------------------------------------------

@dataclass(frozen=True)
class Profile:
    """The User Profile API's answer, read defensively (any field may be missing or null)."""

    username: str | None = None
    name: str | None = None
    profile_pic_url: str | None = None
    follower_count: int | None = None
    is_user_follow_business: bool | None = None
    is_business_follow_user: bool | None = None
    is_verified_user: bool | None = None

    @classmethod
    def from_graph(cls, body: dict[str, Any]) -> Profile:
        return cls(
            username=_text(body.get("username"), 255),
            name=_text(body.get("name"), 255),
            profile_pic_url=_url(body.get("profile_pic")),
            follower_count=body["follower_count"] if isinstance(body.get("follower_count"), int)
            and not isinstance(body.get("follower_count"), bool) else None,
            is_user_follow_business=_bool(body.get("is_user_follow_business")),
            is_business_follow_user=_bool(body.get("is_business_follow_user")),
            is_verified_user=_bool(body.get("is_verified_user")),
        )


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value[:limit] or None


def _url(value: Any) -> str | None:
    text = _text(value, 4096)
    return text if text and text.startswith(("https://", "http://")) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


# Why a fetch failed, in words staff understand (the code is kept beside it).
_REASONS: list[tuple[type[GraphError], str]] = [
    (UserUnavailable, "This person isn't available on Instagram (they blocked the account or turned off messages)."),
    (ConsentRequired, "Instagram shares this profile only after the person has written to the account."),
    (NotFound, "Instagram does not know this id (the account may have been deleted)."),
    (PermissionDenied, "Instagram refused access to this profile."),
    (RateLimited, "Instagram asked us to slow down; it will be tried again."),
    (Transient, "Instagram did not answer; it will be tried again."),
]


def error_reason(exc: GraphError) -> str:
    for cls, reason in _REASONS:
        if isinstance(exc, cls):
            return reason
    return str(exc)[:500] or type(exc).__name__


def error_code(exc: GraphError) -> str:
    if exc.code is None:
        return type(exc).__name__[:32]
    return (f"{exc.code}/{exc.subcode}" if exc.subcode else str(exc.code))[:32]


# --- Profile pictures ------------------------------------------------------------------

def picture_url(identity: Any | None, now: datetime | None = None) -> str | None:
    """The picture to show for an identity, or None (the UI shows initials instead).

    The stored copy once the media pipeline keeps one; else Instagram's link while it
    has not expired and points at an Instagram media host (MEDIA_ALLOWED_HOSTS), so staff
    browsers never load a picture from anywhere else. A link that still fails in the
    browser is the UI's to hide.
    """
    if identity is None:
        return None
    stored = media.picture_src(identity)
    if stored:
        return stored
    url = getattr(identity, "profile_pic_url", None)
    if not url or not media.allowed_media_host(url):
        return None
    expires = media.link_expires_at(url)
    if expires is not None and expires <= (now or utcnow()):
        return None
    return url


# --- Writing identities (the only place that does) ----------------------------------------

def _guard(account: Account, igsid: str) -> None:
    if not igsid or igsid == account.ig_user_id:
        raise SelfIdentityError(f"{account.label} is never its own participant (igsid {igsid!r}).")


def _upsert(values: dict[str, Any], changes: dict[str, Any]) -> None:
    """INSERT the identity, or UPDATE these columns of the (account, igsid) row already there."""
    dialect = db.session.get_bind().dialect.name
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = builder(Identity).values(**values).on_conflict_do_update(index_elements=["account_id", "igsid"],
                                                                  set_=changes)
    db.session.execute(stmt)


def save_profile(account: Account, igsid: str, profile: Profile, *, now: datetime | None = None) -> None:
    """Store what the User Profile API said (inside the caller's transaction)."""
    _guard(account, igsid)
    now = now or utcnow()
    fields = {
        "username": profile.username, "name": profile.name, "profile_pic_url": profile.profile_pic_url,
        "follower_count": profile.follower_count, "is_user_follow_business": profile.is_user_follow_business,
        "is_business_follow_user": profile.is_business_follow_user, "is_verified_user": profile.is_verified_user,
        "source": "profile", "last_fetched_at": now, "last_error": None, "last_error_code": None,
        "last_error_at": None, "updated_at": now,
    }
    _upsert({"account_id": account.id, "igsid": igsid, "created_at": now, **fields}, fields)
    if profile.profile_pic_url:
        media.note_profile_picture(account.id, igsid)  # a copy that outlives the link, after the commit


def save_participant(account: Account, igsid: str, username: str | None, *, now: datetime | None = None) -> bool:
    """Store the username the Conversations API lists for a participant; True when it changed."""
    return bool(save_participants(account, [(igsid, username)], now=now))


def save_participants(account: Account, people: list[tuple[str, str | None]], *,
                      now: datetime | None = None) -> set[str]:
    """save_participant for many (igsid, username) at once; returns the igsids whose username changed."""
    now = now or utcnow()
    rows = {}
    for igsid, username in people:
        _guard(account, igsid)
        username = _text(username, 255)
        if username:
            rows[igsid] = {"account_id": account.id, "igsid": igsid, "username": username,
                           "source": "participants", "created_at": now, "updated_at": now}
    if not rows:
        return set()
    table = Identity.__table__
    builder = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = builder(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["account_id", "igsid"],
        set_={"username": stmt.excluded.username, "updated_at": stmt.excluded.updated_at,
              "source": func.coalesce(table.c.source, "participants")},
        where=table.c.username.is_distinct_from(stmt.excluded.username),
    ).returning(table.c.igsid)
    return set(db.session.scalars(stmt, list(rows.values())))


def save_error(account: Account, igsid: str, exc: GraphError, *, now: datetime | None = None) -> str:
    """Record why a fetch failed, keeping whatever was known before; returns the reason."""
    _guard(account, igsid)
    now = now or utcnow()
    reason = error_reason(exc)
    fields = {"last_error": reason, "last_error_code": error_code(exc), "last_error_at": now, "updated_at": now}
    _upsert({"account_id": account.id, "igsid": igsid, "created_at": now, **fields}, fields)
    return reason


# --- First contact ------------------------------------------------------------------------

def needs_fetch(row: Any | None, now: datetime | None = None, config=None) -> bool:
    """Whether a profile should be (re)fetched: missing, stale, picture expiring, or a retry due."""
    if row is None:
        return True
    cfg = config or current_app.config
    now = now or utcnow()
    fetched, failed = row.last_fetched_at, row.last_error_at
    if failed is not None and (fetched is None or failed >= fetched):
        return now - failed >= timedelta(seconds=cfg["IDENTITY_ERROR_RETRY_SECONDS"])
    if fetched is None or now - fetched >= timedelta(seconds=cfg["IDENTITY_TTL_SECONDS"]):
        return True
    if row.profile_pic_url and row.profile_pic_state != "stored":
        expires = media.link_expires_at(row.profile_pic_url)
        margin = timedelta(seconds=cfg["IDENTITY_PIC_REFRESH_MARGIN_SECONDS"])
        if expires is not None and expires - now <= margin:
            return True
    return False


def _staleness_row(account_id: int, igsid: str):
    return db.session.execute(
        select(Identity.last_fetched_at, Identity.last_error_at, Identity.profile_pic_url,
               Identity.profile_pic_state)
        .where(Identity.account_id == account_id, Identity.igsid == igsid)
    ).first()


def note_participant(account_id: int, igsid: str) -> None:
    """Called inside the ingest (or resync) transaction for each participant of an event.

    Decides now and enqueues after the commit: a fetch_profile job with a deterministic id
    when the identity is missing or stale. Never for the account's own id, and not while
    the account's token is known to be dead.
    """
    note_participants(account_id, [igsid])


def note_participants(account_id: int, igsids: list[str]) -> None:
    """note_participant for many participants of one account (one query)."""
    account = db.session.get(Account, account_id)
    if account is None or account.status != "active":
        return
    noted: set = db.session.info.setdefault("identities_noted", set())
    wanted = []
    for igsid in igsids:
        igsid = str(igsid or "").strip()
        if igsid and igsid != account.ig_user_id and (account_id, igsid) not in noted:
            noted.add((account_id, igsid))
            wanted.append(igsid)
    if not wanted:
        return
    rows = {row.igsid: row for row in db.session.execute(
        select(Identity.igsid, Identity.last_fetched_at, Identity.last_error_at, Identity.profile_pic_url,
               Identity.profile_pic_state)
        .where(Identity.account_id == account_id, Identity.igsid.in_(wanted)))}
    for igsid in wanted:
        if needs_fetch(rows.get(igsid)):
            on_commit(lambda igsid=igsid: enqueue_fetch(account_id, igsid))


def enqueue_fetch(account_id: int, igsid: str) -> None:
    """The fetch_profile job for one participant (one that is queued or running already is kept)."""
    enqueue("inbox.tasks.fetch_profile", account_id, igsid, queue="default", retries=3,
            retry_intervals=[10, 60, 300])


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_noted(session: Session) -> None:
    # A retried transaction decides again.
    session.info.pop("identities_noted", None)


def fetch_profile(account_id: int, igsid: str, *, force: bool = False) -> str:
    """Fetch one participant's profile and store it (committed); returns what happened.

    "fetched", "fresh" (nothing to do), "failed: <reason>" (recorded on the identity),
    "reconnect needed", or "skipped" (the account itself, unknown or paused account).
    Throttling and Meta outages raise, so the RQ job is retried later.
    """
    igsid = str(igsid or "").strip()
    account = db.session.get(Account, account_id)
    if account is None or not igsid or igsid == account.ig_user_id or account.status != "active":
        return "skipped"
    if not force and not needs_fetch(_staleness_row(account_id, igsid)):
        return "fresh"
    try:
        body = GraphClient.for_account(account).profile(igsid)
    except TokenInvalid as exc:
        account_dead(account_id, exc)
        return "reconnect needed"
    except (RateLimited, Transient):
        raise
    except GraphError as exc:
        reason = save_error(account, igsid, exc)
        db.session.commit()
        return f"failed: {reason}"
    save_profile(account, igsid, Profile.from_graph(body))
    _publish_conversation_after_commit(account_id, igsid)
    db.session.commit()
    return "fetched"


def account_dead(account_id: int, exc: GraphError) -> None:
    """The token died: flag the account (the inbox shows the reconnect banner)."""
    db.session.rollback()
    mark_reconnect_needed(account_id, f"Instagram refused the access token: {exc}"[:500])


def _publish_conversation_after_commit(account_id: int, igsid: str) -> None:
    conversation_id = db.session.scalar(select(Conversation.id).where(
        Conversation.account_id == account_id, Conversation.customer_igsid == igsid))
    if conversation_id is not None:
        publish_after_commit(account_id, "conversation.updated", conversation_id=conversation_id)


# --- Refresh identities (a JobRun) ----------------------------------------------------------

def start_refresh(account_id: int, user_id: int | None = None, *, enqueue_job: bool = True) -> tuple[JobRun, bool]:
    """Start "Refresh identities" for the account, or return the one already running."""
    return jobruns.start_or_get_running(REFRESH, account_id, "inbox.tasks.refresh_identities", user_id=user_id,
                                        queue="low", enqueue_job=enqueue_job)


def participant_ids(account_id: int, *, now: datetime | None = None) -> list[str]:
    """Everyone the account talks to: its conversations' customers and who wrote in the last days."""
    account = db.session.get(Account, account_id)
    if account is None:
        return []
    days = current_app.config["IDENTITY_REFRESH_DAYS"]
    since_ms = int(((now or utcnow()) - timedelta(days=days)).timestamp() * 1000)
    ids = set(db.session.scalars(select(Conversation.customer_igsid).where(Conversation.account_id == account_id)))
    ids.update(db.session.scalars(
        select(Message.sender_igsid).where(Message.account_id == account_id, Message.meta_timestamp >= since_ms,
                                           Message.sender_igsid.is_not(None)).distinct()))
    ids.discard(account.ig_user_id)
    return sorted(i for i in ids if i and i.strip() == i)


@dataclass
class RefreshSummary:
    total: int = 0
    refreshed: int = 0
    failed: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    stopped: str | None = None

    def fail(self, igsid: str, reason: str, identity: Any | None = None) -> None:
        self.failed += 1
        if len(self.errors) < MAX_SUMMARY_ERRORS:
            self.errors.append({"igsid": igsid, "name": display_name(identity, igsid), "error": reason})

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"refreshed": self.refreshed, "failed": self.failed, "total": self.total,
                               "errors": list(self.errors)}
        if self.stopped:
            out["stopped"] = self.stopped
            out["not_tried"] = self.total - self.refreshed - self.failed
        return out


def refresh_identities(job_run_id: int) -> None:
    """The "Refresh identities" run: refetch every participant, report progress, then a summary."""
    with jobruns.running(job_run_id) as run:
        if run is None:
            return
        _refresh(run)


def _refresh(run: jobruns.RunHandle) -> None:
    app = current_app._get_current_object()
    account = db.session.get(Account, run.account_id)
    ids = participant_ids(account.id)
    summary = RefreshSummary(total=len(ids))
    run.partial_summary = summary.as_dict()
    run.progress(0, len(ids), force=True)
    if not ids:
        run.finish(summary.as_dict())
        return
    try:
        client = GraphClient.for_account(account)
    except TokenInvalid as exc:
        _stop_for_token(run, account.id, summary, exc)
        return
    known = {row.igsid: row for row in db.session.scalars(
        select(Identity).where(Identity.account_id == account.id))}
    token_error: TokenInvalid | None = None
    stop = threading.Event()
    done = unsaved = 0
    for igsid, outcome in _fetch_many(app, client, ids, int(app.config["IDENTITY_REFRESH_CONCURRENCY"]), stop):
        if isinstance(outcome, TokenInvalid):
            stop.set()  # every later call would fail the same way
            token_error = token_error or outcome
            continue
        if isinstance(outcome, GraphError):
            summary.fail(igsid, save_error(account, igsid, outcome), known.get(igsid))
        elif isinstance(outcome, BaseException):
            log.error("refreshing %s failed", igsid, exc_info=outcome)
            summary.fail(igsid, f"Unexpected error: {outcome}"[:300], known.get(igsid))
        else:
            save_profile(account, igsid, Profile.from_graph(outcome))
            summary.refreshed += 1
        done += 1
        unsaved += 1
        run.partial_summary = summary.as_dict()
        if unsaved >= 200:
            db.session.commit()
            unsaved = 0
        run.progress(done)  # commits what is saved so far when it writes
    db.session.commit()
    if token_error is not None:
        _stop_for_token(run, account.id, summary, token_error)
        return
    run.finish(summary.as_dict())


def _stop_for_token(run: jobruns.RunHandle, account_id: int, summary: RefreshSummary, exc: GraphError) -> None:
    db.session.commit()  # keep the profiles saved before the token died
    account_dead(account_id, exc)
    summary.stopped = ("Instagram refused the account's access token, so the refresh stopped. "
                       "Reconnect the account, then refresh again.")
    run.finish(summary.as_dict(), state="failed", error=summary.stopped)


_DONE = object()


def _fetch_many(app, client: GraphClient, ids: list[str], concurrency: int,
                stop: threading.Event) -> Iterator[tuple[str, Any]]:
    """(igsid, profile body or the exception) for each id, fetched by a few threads.

    Threads only call Meta (each call waits for the account's shared rate slot); the
    caller's thread does every database write. Setting `stop` lets the threads finish
    the call they are in and take no more.
    """
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for igsid in ids:
        todo.put(igsid)
    results: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        try:
            with app.app_context():
                while not stop.is_set():
                    try:
                        igsid = todo.get_nowait()
                    except queue.Empty:
                        return
                    outcome = _fetch_one(client, igsid)
                    if isinstance(outcome, TokenInvalid):
                        stop.set()  # every later call would be refused the same way: take no more
                    results.put((igsid, outcome))
        finally:
            results.put(_DONE)

    threads = [threading.Thread(target=work, name=f"refresh-{i}", daemon=True)
               for i in range(max(1, min(concurrency, len(ids))))]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = results.get()
            if item is _DONE:
                running -= 1
                continue
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def _fetch_one(client: GraphClient, igsid: str) -> Any:
    for attempt in range(2):
        try:
            return client.profile(igsid)
        except RateLimited as exc:
            wait = exc.retry_after or 5.0
            if attempt or wait > MAX_REFRESH_WAIT_SECONDS:
                return exc
            time.sleep(wait)
        except GraphError as exc:
            return exc
        except Exception as exc:  # a bug must not leave the run waiting for this thread
            return exc
    return RateLimited("Instagram kept asking us to slow down.")


# --- Looking at identities --------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    """A customer of the account and what we know of them (the People page, the CLI)."""

    igsid: str
    identity: Identity | None
    conversation_id: int | None
    last_message_at: datetime | None


def _own_id(account_id: int):
    return select(Account.ig_user_id).where(Account.id == account_id).scalar_subquery()


def people(account_id: int, *, limit: int = 500) -> list[Person]:
    """The account's customers, most recent conversation first, with their identities (never the account)."""
    rows = db.session.execute(
        select(Conversation.customer_igsid, Conversation.id, Conversation.last_message_at, Identity)
        .outerjoin(Identity, (Identity.account_id == Conversation.account_id)
                   & (Identity.igsid == Conversation.customer_igsid))
        .where(Conversation.account_id == account_id, Conversation.customer_igsid != _own_id(account_id))
        .order_by(Conversation.last_message_at.desc().nulls_last(), Conversation.id.desc())
        .limit(limit)
    ).all()
    return [Person(igsid, identity, conversation_id, at) for igsid, conversation_id, at, identity in rows]


def person(account_id: int, igsid: str) -> Person | None:
    """One customer of the account (None when they have no conversation with it)."""
    row = db.session.execute(
        select(Conversation.customer_igsid, Conversation.id, Conversation.last_message_at, Identity)
        .outerjoin(Identity, (Identity.account_id == Conversation.account_id)
                   & (Identity.igsid == Conversation.customer_igsid))
        .where(Conversation.account_id == account_id, Conversation.customer_igsid == igsid,
               Conversation.customer_igsid != _own_id(account_id))
    ).first()
    return Person(row[0], row[3], row[1], row[2]) if row else None


def identity_counts(account_id: int) -> dict[str, int]:
    """How many customers have a name, only an id, or a failed last fetch."""
    rows = db.session.execute(
        select(Identity.username, Identity.name, Identity.last_fetched_at, Identity.last_error_at)
        .select_from(Conversation)
        .outerjoin(Identity, (Identity.account_id == Conversation.account_id)
                   & (Identity.igsid == Conversation.customer_igsid))
        .where(Conversation.account_id == account_id, Conversation.customer_igsid != _own_id(account_id))
    ).all()
    named = sum(1 for r in rows if not is_fallback_name(SimpleNamespace(username=r.username, name=r.name)))
    failed = sum(1 for r in rows if r.last_error_at and (r.last_fetched_at is None
                                                           or r.last_error_at >= r.last_fetched_at))
    return {"total": len(rows), "named": named, "id_only": len(rows) - named, "failed": failed}


# --- Doctor ------------------------------------------------------------------------------

DOCTOR_RULES = {
    "orphan": "belongs to no account (account_id missing or deleted)",
    "self": "is the account's own id (the account is never a participant)",
    "bad_igsid": "has an igsid that is not a plain Instagram id",
    "duplicate": "repeats another row of the same account once its igsid is cleaned",
    "masked_name": "holds a blank or masked placeholder (like user_******) as username or name",
    "username_format": "has a username written with a leading @ or spaces",
    "bad_picture": "has a picture link that is not on an Instagram media host (MEDIA_ALLOWED_HOSTS)",
}


@dataclass
class Finding:
    rule: str
    identity_id: int
    account_id: int | None
    igsid: str
    detail: str
    fixed: bool = False

    def line(self) -> str:
        mark = "fixed" if self.fixed else "found"
        return (f"{mark}\t{self.rule}\tidentity {self.identity_id}\taccount {self.account_id}\t"
                f"igsid {self.igsid!r}\t{self.detail}")


def doctor(*, fix: bool = False, account_id: int | None = None) -> list[Finding]:
    """Check every identity row against the rules; with fix, repair them (committed).

    Repairs: orphan, self, duplicate and unusable ids are deleted (the cache can be
    rebuilt with a refresh); placeholders and bad links are cleared and the row is
    marked for a refetch; usernames lose a leading @ and spaces.
    """
    accounts = {a.id: a for a in db.session.scalars(select(Account))}
    query = select(Identity).order_by(Identity.account_id, Identity.id)
    if account_id is not None:
        query = query.where(Identity.account_id == account_id)
    rows = list(db.session.scalars(query))
    seen: set[tuple[int, str]] = {(row.account_id, row.igsid) for row in rows}
    findings: list[Finding] = []
    for row in rows:
        for rule, detail, repair in _problems(row, accounts.get(row.account_id), seen):
            finding = Finding(rule, row.id, row.account_id, row.igsid, detail)
            findings.append(finding)
            if fix:
                if repair is _DELETE:
                    db.session.delete(row)
                else:
                    repair(row)
                finding.fixed = True
    if fix:
        db.session.commit()
    else:
        db.session.rollback()
    return findings


_DELETE = object()


def _problems(row: Identity, account: Account | None, seen: set[tuple[int, str]]) -> Iterator[tuple]:
    """(rule, detail, repair) for each rule the row breaks; a row to delete yields nothing more."""
    if account is None:
        yield "orphan", f"account {row.account_id} does not exist", _DELETE
        return
    clean = (row.igsid or "").strip()
    if clean == account.ig_user_id:
        yield "self", f"{account.label} listed as its own participant", _DELETE
        return
    if not clean.isdigit() or len(clean) > 64:
        yield "bad_igsid", "not a numeric Instagram id", _DELETE
        return
    if clean != row.igsid:
        if (row.account_id, clean) in seen:
            yield "duplicate", f"the same person as igsid {clean}", _DELETE
            return

        def rename(r: Identity) -> None:
            seen.add((r.account_id, clean))
            r.igsid = clean

        yield "bad_igsid", f"written with spaces; {clean} once cleaned", rename
    for column in ("username", "name"):
        value = getattr(row, column)
        if value is not None and not usable_name(value):
            # Cleared and due again: first contact or a refresh loads the real one.
            yield "masked_name", f"{column} {value!r}", lambda r, c=column: _clear(r, c)
    cleaned = (row.username or "").strip().lstrip("@").strip()
    if row.username and usable_name(row.username) and row.username != cleaned:
        yield "username_format", f"username {row.username!r}", lambda r: setattr(r, "username", cleaned)
    if row.profile_pic_url and not media.allowed_media_host(row.profile_pic_url):
        yield "bad_picture", f"picture {row.profile_pic_url[:60]!r}", lambda r: _clear(r, "profile_pic_url")


def _clear(row: Identity, column: str) -> None:
    setattr(row, column, None)
    row.last_fetched_at = None
