"""Erasing people's data: one customer (staff, CLI), one whole account (Meta's data-deletion
request), and messages past an account's retention.

Rows go the way the schema says they go: deleting a row deletes the rows whose foreign key
says ON DELETE CASCADE and empties the ones that say SET NULL, done here in SQL, children
first, on SQLite (which enforces no foreign keys here) and PostgreSQL alike. So a table
another part of the inbox adds (notes, comments, conversation events) is covered by its own
foreign keys; a column naming a customer (`*igsid`) in an account's table is covered by
name. Their comments take the account's public replies to them along, and others'
comments keep their words without the @mention. Stored files (attachments, profile
pictures) are deleted after the commit; webhook deliveries keep only the events that name
nobody erased; queued jobs about the customer are dropped.

Each erasure leaves an `erasures` row and an INFO line with counts, never who it was.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from flask import current_app
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import ColumnElement, LargeBinary, Table, delete, func, literal, or_, select, text, update

from .. import metrics
from ..extensions import db, get_redis, on_commit
from ..models import Account, Comment, Erasure, JobRun, Post, WebhookDelivery, utcnow
from ..queue import all_queues, enqueue
from .storage import get_storage

log = logging.getLogger(__name__)

# Columns that hold a stored file's key: the file goes with the row.
FILE_COLUMNS = {"attachments": ("storage_key",), "identities": ("profile_pic_key",)}
RETENTION_BATCH = 500


class Counts(dict):
    def add(self, key: str, n: int) -> None:
        if n:
            self[key] = self.get(key, 0) + n


# --- Deleting rows as the schema says ---------------------------------------------------------

def _table(name: str) -> Table:
    return db.metadata.tables[name]


def _delete_rows(table: Table, where: ColumnElement, counts: Counts, files: list[str]) -> int:
    """Delete table's rows matching `where`, first every row that depends on them (by foreign key)."""
    pk = table.primary_key.columns.values()[0]
    chosen = select(pk).where(where)
    for column in FILE_COLUMNS.get(table.name, ()):
        files.extend(k for k in db.session.scalars(select(table.c[column]).where(where)) if k)
    for child in db.metadata.sorted_tables:
        for fk in child.foreign_keys:
            if fk.column.table is not table:
                continue
            if fk.ondelete and fk.ondelete.upper() == "SET NULL":
                db.session.execute(update(child).where(fk.parent.in_(chosen)).values({fk.parent.name: None}))
            elif child is not table:
                _delete_rows(child, fk.parent.in_(chosen), counts, files)
    deleted = db.session.execute(delete(table).where(where)).rowcount or 0
    counts.add(table.name, deleted)
    return deleted


def _igsid_columns(table: Table) -> list:
    return [c for name, c in table.c.items() if name.endswith("igsid")] if "account_id" in table.c else []


def _after_commit_delete_files(keys: list[str]) -> None:
    if not keys:
        return
    store = get_storage()

    def remove() -> None:
        for key in keys:
            try:
                store.delete(key)
            except Exception:  # the daily sweep deletes a file no row refers to
                log.warning("erasure: a stored file could not be deleted now; the daily sweep will", exc_info=True)
    on_commit(remove)


def _forget_search_text() -> None:
    """SQLite's full-text index keeps deleted text in its segments until they are merged: merge them now."""
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(text("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')"))


# --- Webhook deliveries and run summaries ----------------------------------------------------

def _mentions(value: Any, needles: tuple[str, ...]) -> bool:
    blob = json.dumps(value, ensure_ascii=False)
    return any(n in blob for n in needles)


def _redact_deliveries(needles: tuple[str, ...], counts: Counts, *, whole_entries: bool = False) -> None:
    """Keep of each stored delivery only what names none of `needles`; delete one left with nothing.

    `whole_entries`: drop every entry (one account's part of a delivery) that names them;
    otherwise only the events (messaging, standby, changes items) that do.
    """
    needles = tuple(n for n in needles if n)
    if not needles:
        return
    condition = or_(*(_body_contains(needle.encode()) for needle in needles))
    for delivery_id, body, results in db.session.execute(
            select(WebhookDelivery.id, WebhookDelivery.body, WebhookDelivery.results).where(condition)).all():
        body = bytes(body)
        kept = _without(body, needles, whole_entries)
        if kept == body:
            continue  # matched by a LIKE wildcard ("_" in a username), not by the name itself
        if kept is None:
            db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.id == delivery_id))
            counts.add("webhook_deliveries", 1)
            continue
        db.session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(
            body=kept, signature=None,
            results=[r for r in results or [] if not _mentions(r, needles)] or None))
        counts.add("webhook_deliveries_redacted", 1)


def _body_contains(needle: bytes) -> ColumnElement:
    """A delivery's raw bytes contain these (bytea on PostgreSQL, a BLOB on SQLite)."""
    if db.session.get_bind().dialect.name == "sqlite":
        return func.instr(WebhookDelivery.body, literal(needle, LargeBinary)) > 0
    # bytea LIKE bytea compares bytes; a "_" in a name matches any byte, and _without() checks exactly.
    return WebhookDelivery.body.op("LIKE", is_comparison=True)(literal(b"%" + needle + b"%", LargeBinary))


def _without(body: bytes, needles: tuple[str, ...], whole_entries: bool) -> bytes | None:
    """The body without what names them, or None when nothing else is left (or it is not JSON)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    entries = payload.get("entry") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        return None
    if not any(n.encode() in body for n in needles) and not _mentions(payload, needles):
        return body
    kept_entries, events_left = [], 0
    for entry in entries:
        if not isinstance(entry, dict) or (whole_entries and _mentions(entry, needles)):
            continue
        entry = dict(entry)
        for key in ("messaging", "standby", "changes"):
            if isinstance(entry.get(key), list):
                entry[key] = [item for item in entry[key] if not _mentions(item, needles)]
                events_left += len(entry[key])
        if _mentions(entry, needles):
            continue  # named outside its events (odd): the entry goes whole
        kept_entries.append(entry)
    if not events_left:
        return None
    return json.dumps({**payload, "entry": kept_entries}, ensure_ascii=False).encode()


def _redact_run_summaries(account_id: int, needles: tuple[str, ...]) -> None:
    """Background runs list the people they failed on: drop those lines."""
    for run in db.session.scalars(select(JobRun).where(JobRun.account_id == account_id)):
        summary = run.summary or {}
        errors = summary.get("errors")
        if isinstance(errors, list) and any(_mentions(e, needles) for e in errors):
            run.summary = {**summary, "errors": [e for e in errors if not _mentions(e, needles)]}


def _drop_queued_jobs(needle: str) -> None:
    """Jobs whose id names the customer (a profile to fetch) must not bring them back."""
    def drop() -> None:
        app = current_app._get_current_object()
        redis = get_redis(app)
        for q in all_queues(app):
            ids = list(q.get_job_ids()) + list(ScheduledJobRegistry(queue=q).get_job_ids())
            for job_id in ids:
                if needle in job_id.split("-"):
                    try:
                        Job.fetch(job_id, connection=redis).delete()
                    except Exception:
                        log.warning("erasure: a queued job could not be dropped", exc_info=True)
    on_commit(drop)


# --- One customer ---------------------------------------------------------------------------

class NothingToErase(LookupError):
    """The account holds nothing about this person."""


def erase_customer(account_id: int, igsid: str, *, requested_by: str, actor_user_id: int | None = None) -> Erasure:
    """Delete everything the account holds that names one customer; returns the audit row (committed)."""
    igsid = str(igsid).strip()
    account = db.session.get(Account, account_id)
    if account is None or not igsid or igsid == account.ig_user_id:
        raise NothingToErase("No such customer.")
    identity = db.session.execute(
        select(_table("identities").c.username, _table("identities").c.name)
        .where(_table("identities").c.account_id == account_id, _table("identities").c.igsid == igsid)).first()
    username = identity.username if identity is not None else None
    # Their comments' ids: the account's public replies to them go too, and so do stored events about them.
    their_comments = [c for c in db.session.scalars(select(Comment.comment_id).where(
        Comment.account_id == account_id, Comment.author_igsid == igsid)) if c]
    needles = (igsid, *their_comments, *((f"@{username}",) if username else ()))
    counts, files = Counts(), []
    for table in reversed(db.metadata.sorted_tables):
        for column in _igsid_columns(table):
            _delete_rows(table, (table.c.account_id == account_id) & (column == igsid), counts, files)
    if their_comments:
        _delete_rows(Comment.__table__, (Comment.account_id == account_id) & Comment.is_own.is_(True)
                     & Comment.parent_comment_id.in_(their_comments), counts, files)
    if username:
        # A post of theirs that they shared names them as its owner; others' comments may @mention them.
        _delete_rows(Post.__table__, (Post.account_id == account_id) & (Post.owner_username == username)
                     & Post.is_own.is_(False), counts, files)
        _unmention(account_id, username, counts)
    if not counts:
        db.session.rollback()
        raise NothingToErase("This account holds nothing about that customer.")
    _redact_deliveries(needles, counts)
    _redact_run_summaries(account_id, needles)
    counts.add("files", len(files))
    erasure = _audit("customer", account_id, requested_by, actor_user_id, counts, status="done")
    _after_commit_delete_files(files)
    _forget_search_text()
    _drop_queued_jobs(igsid)
    db.session.commit()
    metrics.erased("customer")
    log.info("erased a customer of account %s (erasure %s): %s", account_id, erasure.id, _summary(counts))
    return erasure


def _unmention(account_id: int, username: str, counts: Counts) -> None:
    """Someone else's comment that @mentions them keeps its words, without the name."""
    mention = f"@{username}"
    for comment in db.session.scalars(select(Comment).where(Comment.account_id == account_id,
                                                            Comment.text.contains(mention, autoescape=True))):
        comment.text = comment.text.replace(mention, "@[erased]")
        if comment.previous_texts:
            comment.previous_texts = [t.replace(mention, "@[erased]") for t in comment.previous_texts]
        counts.add("mentions_removed", 1)
    db.session.flush()


def customer_holdings(account_id: int, igsid: str) -> dict[str, int]:
    """What erasing this customer would delete: their messages and attachments (for the confirmation)."""
    messages, conversations, attachments = _table("messages"), _table("conversations"), _table("attachments")
    theirs = select(conversations.c.id).where(conversations.c.account_id == account_id,
                                              conversations.c.customer_igsid == igsid)
    message_ids = select(messages.c.id).where(messages.c.conversation_id.in_(theirs))
    return {
        "messages": db.session.scalar(select(func.count()).select_from(messages)
                                      .where(messages.c.conversation_id.in_(theirs))) or 0,
        "attachments": db.session.scalar(select(func.count()).select_from(attachments)
                                         .where(attachments.c.message_id.in_(message_ids))) or 0,
    }


def _audit(kind: str, account_id: int | None, requested_by: str, actor_user_id: int | None, counts: dict,
           *, status: str, code: str | None = None) -> Erasure:
    erasure = Erasure(kind=kind, account_id=account_id, requested_by=requested_by, actor_user_id=actor_user_id,
                      counts=dict(counts) or None, status=status, confirmation_code=code,
                      finished_at=utcnow() if status != "pending" else None)
    db.session.add(erasure)
    db.session.flush()
    return erasure


def _summary(counts: dict) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "nothing"


# --- A whole account (Meta's data-deletion request) --------------------------------------------

def request_account_erasure(app_user_id: str) -> Erasure:
    """Meta asked us to delete what we hold for the person behind this app-scoped id.

    Answered at once with a confirmation code; the worker does the deleting (a big account
    takes a while). Someone we hold nothing for gets a code too, whose page says so.
    """
    account_id = db.session.scalar(select(Account.id).where(
        (Account.app_user_id == app_user_id) | (Account.ig_user_id == app_user_id)))
    code = secrets.token_hex(10)
    if account_id is None:
        erasure = _audit("account", None, "meta", None, {}, status="nothing_held", code=code)
        db.session.commit()
        return erasure
    erasure = _audit("account", account_id, "meta", None, {}, status="pending", code=code)
    enqueue_account_erasure(erasure.id)
    db.session.commit()
    log.info("data deletion requested for account %s (erasure %s)", account_id, erasure.id)
    return erasure


def enqueue_account_erasure(erasure_id: int) -> None:
    on_commit(lambda: enqueue("inbox.tasks.erase_account", erasure_id, queue="low", timeout=3600))


def erase_account(erasure_id: int) -> Erasure | None:
    """The job: delete the account and everything of it, its files, its part of stored deliveries."""
    erasure = db.session.get(Erasure, erasure_id)
    if erasure is None or erasure.status != "pending":
        return erasure
    account = db.session.get(Account, erasure.account_id) if erasure.account_id else None
    counts, files = Counts(), []
    if account is not None:
        ig_user_id, account_id = account.ig_user_id, account.id
        db.session.expunge(account)
        erasure.account_id = None  # the row it named is going
        db.session.flush()
        _delete_rows(Account.__table__, Account.id == account_id, counts, files)
        _redact_deliveries((ig_user_id,), counts, whole_entries=True)
        counts.add("files", len(files))
    erasure.status, erasure.finished_at, erasure.counts = "done", utcnow(), dict(counts) or None
    _after_commit_delete_files(files)
    _forget_search_text()
    db.session.commit()
    metrics.erased("account")
    log.info("erased an account at Meta's request (erasure %s): %s", erasure.id, _summary(counts))
    return erasure


def pending_account_erasures() -> list[int]:
    """Account erasures not done yet (the recovery enqueues them again: Redis may have lost the job)."""
    return list(db.session.scalars(select(Erasure.id).where(Erasure.kind == "account", Erasure.status == "pending")))


def find_request(code: str) -> Erasure | None:
    """A data-deletion request by its confirmation code (for its status page)."""
    if not code or len(code) > 64:
        return None
    return db.session.scalar(select(Erasure).where(Erasure.confirmation_code == code))


# --- Retention --------------------------------------------------------------------------------

def set_retention(account_id: int, days: int | None) -> None:
    if days is not None and days < 1:
        raise ValueError("Retention is at least one day.")
    account = db.session.get(Account, account_id)
    account.retention_days = days
    db.session.commit()


def apply_retention(*, now=None) -> list[Erasure]:
    """Delete messages (and their attachments and files) older than each account's retention."""
    now = now or utcnow()
    done = []
    for account_id, days in db.session.execute(
            select(Account.id, Account.retention_days).where(Account.retention_days.is_not(None))).all():
        erasure = _apply_retention(account_id, int(days), now)
        if erasure is not None:
            done.append(erasure)
    db.session.rollback()
    return done


def _apply_retention(account_id: int, days: int, now) -> Erasure | None:
    messages, conversations = _table("messages"), _table("conversations")
    cutoff = now - timedelta(days=days)
    cutoff_ms = int(cutoff.timestamp() * 1000)
    counts, files = Counts(), []
    while True:  # in batches, each committed: a first run on a big account is long
        ids = list(db.session.scalars(select(messages.c.id).where(
            messages.c.account_id == account_id, messages.c.meta_timestamp < cutoff_ms).limit(RETENTION_BATCH)))
        if not ids:
            break
        batch_files: list[str] = []
        _delete_rows(messages, messages.c.id.in_(ids), counts, batch_files)
        files.extend(batch_files)
        _after_commit_delete_files(batch_files)
        db.session.commit()
    # A conversation left with no message shows nothing: it goes too (its preview was a message).
    has_messages = select(messages.c.id).where(messages.c.conversation_id == conversations.c.id).exists()
    emptied_files: list[str] = []
    _delete_rows(conversations, (conversations.c.account_id == account_id)
                 & (func.coalesce(conversations.c.last_message_at, conversations.c.created_at) < cutoff)
                 & ~has_messages, counts, emptied_files)
    files.extend(emptied_files)
    _after_commit_delete_files(emptied_files)
    if not counts:
        db.session.rollback()
        return None
    counts.add("files", len(files))
    erasure = _audit("retention", account_id, "retention", None, counts, status="done")
    _forget_search_text()
    db.session.commit()
    metrics.erased("retention")
    log.info("retention (%d days) for account %s: %s", days, account_id, _summary(counts))
    return erasure


def recent(account_id: int | None = None, limit: int = 50) -> Iterable[Erasure]:
    query = select(Erasure).order_by(Erasure.id.desc()).limit(limit)
    if account_id is not None:
        query = query.where(Erasure.account_id == account_id)
    return db.session.scalars(query)
