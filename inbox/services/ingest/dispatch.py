"""The entry point: which event goes where, and in which transaction.

`apply_events` applies a delivery's events in order. A run of new customer messages
(what a busy delivery mostly is) is written together by `messages.write_messages` in one
transaction; every other event gets a transaction of its own. A transaction that meets a
concurrent writer is run again; a run the database still refuses is applied again one
message at a time, so a bad event fails alone and the rest of the delivery applies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import current_app
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...models import Account
from ..accounts import AccountError, add_account
from ..events import (
    CommentEvent, EditEvent, Event, IgnoredEvent, MentionEvent, MessageEvent, PostbackEvent, ReactionEvent,
    ReferralEvent, SeenEvent,
)
from ..transactions import describe_error, is_outage, retry_on_conflict
from . import changes, comments, echoes, messages
from .messages import NewMessage
from .outcomes import Outcome, event_type

log = logging.getLogger(__name__)

# (account id, account's Instagram id, customer id) of an event that applies.
Target = tuple[int, str, "str | None"]


def apply_events(events: list[Event], *, create_accounts: bool = False,
                 finish: Callable[[list[Outcome]], None] | None = None, label: str = "events") -> list[Outcome]:
    """Apply events in order, each change committed; returns one Outcome per event.

    finish(outcomes), when given, runs once inside a transaction that commits: the last
    event's, so the caller records the result with it, or one of its own when that event
    failed. An event that fails is recorded in its Outcome (`error`); a database outage
    is raised, and the events not applied yet stay for a replay.
    """
    together = current_app.config.get("WEBHOOK_BULK", True)
    outcomes: list[Outcome] = []
    finished = False
    i = 0
    while i < len(events):
        end = i + 1
        kind = _batch_kind(events[i]) if together else None
        if kind is not None:
            while end < len(events) and _batch_kind(events[end]) == kind:
                end += 1
        group, last = events[i:end], end == len(events)
        i = end
        if len(group) > 1:
            try:
                outcomes += _commit(group, create_accounts, _finishing(finish, outcomes) if finish and last else None)
                finished = last
                continue
            except Exception as exc:
                if is_outage(exc):
                    raise
                log.info("%s: events %s-%s applied one by one (%s)", label, group[0].index, group[-1].index,
                         describe_error(exc))
        for n, event in enumerate(group):
            last_one = last and n == len(group) - 1
            try:
                outcomes += _commit([event], create_accounts,
                                    _finishing(finish, outcomes) if finish and last_one else None)
                finished = last_one
            except Exception as exc:
                if is_outage(exc):
                    raise
                # One event's failure stays with that event; the rest still applies.
                log.exception("%s: event %s failed", label, event.index)
                error = describe_error(exc)
                outcomes.append(Outcome(index=event.index, type=event_type(event), action="ignored",
                                        reason=f"error: {error}", error=error, account=event.entry_id,
                                        mid=getattr(event, "mid", None), comment_id=getattr(event, "comment_id", None),
                                        media_id=getattr(event, "media_id", None)))
    if finish is not None and not finished:
        try:
            finish(outcomes)
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
    return outcomes


def is_customer_message(event: Event) -> bool:
    """A new message from a customer, by its shape (no echo, no unsend, the sender not the business side)."""
    return (isinstance(event, (MessageEvent, PostbackEvent)) and not getattr(event, "is_echo", False)
            and not getattr(event, "is_deleted", False) and event.sender_id is not None
            and event.sender_id not in (event.entry_id, event.recipient_id))


def is_comment(event: Event) -> bool:
    return isinstance(event, (CommentEvent, MentionEvent))


def _batch_kind(event: Event) -> str | None:
    """Consecutive events of one kind are applied together: new customer messages, comments."""
    if is_customer_message(event):
        return "message"
    if is_comment(event):
        return "comment"
    return None


def _finishing(finish: Callable[[list[Outcome]], None], before: list[Outcome]) -> Callable[[list[Outcome]], None]:
    return lambda these: finish([*before, *these])


def _commit(events: list[Event], create_accounts: bool,
            before_commit: Callable[[list[Outcome]], None] | None) -> list[Outcome]:
    """Apply events in one transaction (committed), run again from the start after a conflict."""
    def work() -> list[Outcome]:
        outcomes = _apply(events, create_accounts)
        if before_commit:
            before_commit(outcomes)
        _relax_commit_durability()
        return outcomes

    return retry_on_conflict(work, on_conflict=_forget_accounts_after)


def _forget_accounts_after(exc: Exception) -> None:
    if isinstance(exc, IntegrityError):
        _account_cache().clear()  # an account that vanished must not stay cached


def _relax_commit_durability() -> None:
    """On PostgreSQL, let this commit return before its WAL reaches the disk.

    Safe for applying events because the delivery itself was committed durably first, and
    the WAL is replayed in order: after a database crash either the delivery's final status
    survived (and with it every event applied before it) or the delivery is still
    "received", which `webhooks replay --failed` picks up as interrupted. Nothing is lost;
    the webhook answers without one disk flush per event.
    """
    if current_app.config.get("WEBHOOK_ASYNC_COMMIT", True) and db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL synchronous_commit TO OFF"))


def _apply(events: list[Event], create_accounts: bool) -> list[Outcome]:
    """Apply events in the current transaction; new customer messages are written together, in order."""
    outcomes: list[Outcome] = []
    items: list[NewMessage] = []
    waiting: list[Outcome] = []
    comment_run: list[tuple[Event, Outcome, int, str]] = []

    def write_waiting() -> None:
        for outcome, written in zip(waiting, messages.write_messages(items)):
            if written.created:
                outcome.fill(written, "created")
            else:
                outcome.fill(written, "duplicate", "mid already stored")
        items.clear()
        waiting.clear()
        write_comments()

    def write_comments() -> None:
        # One call per account, each account's events in delivery order.
        for account_id in dict.fromkeys(account for _, _, account, _ in comment_run):
            mine = [(e, o, ig) for e, o, a, ig in comment_run if a == account_id]
            comments.apply_comment_events(account_id, mine[0][2], [e for e, _, _ in mine], [o for _, o, _ in mine])
        comment_run.clear()

    for event in events:
        outcome, target = _prepare(event, create_accounts)
        outcomes.append(outcome)
        if target is None:
            continue
        account_id, account_ig, customer = target
        if is_comment(event):
            if items:
                write_waiting()
            comment_run.append((event, outcome, account_id, account_ig))
            continue
        message = _as_message(event)
        if (message is not None and customer is not None and not message.is_deleted
                and not _is_outgoing(message, account_ig)):
            items.append(NewMessage(message, account_id, account_ig, customer))
            waiting.append(outcome)
            continue
        write_waiting()  # what came before is applied first
        _apply_other(event, message, target, outcome)
    write_waiting()
    return outcomes


def _as_message(event: Event) -> MessageEvent | None:
    if isinstance(event, MessageEvent):
        return event
    if isinstance(event, PostbackEvent):  # a button the customer tapped: a message with its title
        return MessageEvent(
            index=event.index, entry_id=event.entry_id, sender_id=event.sender_id, recipient_id=event.recipient_id,
            timestamp=event.timestamp, standby=event.standby, note=event.note, mid=event.mid, text=event.title,
            postback_payload=event.payload, referral=event.referral,
        )
    return None


def _is_outgoing(message: MessageEvent, account_ig: str) -> bool:
    return message.is_echo or message.sender_id == account_ig


def _apply_other(event: Event, message: MessageEvent | None, target: Target, outcome: Outcome) -> Outcome:
    account_id, account_ig, customer = target
    if message is not None:
        outgoing = _is_outgoing(message, account_ig)
        if message.is_deleted:
            return changes.apply_unsend(message, account_id, account_ig, customer, outgoing, outcome)
        if outgoing:
            return echoes.apply_echo(message, account_id, account_ig, customer, outcome)
        outcome.mid = message.mid
        existing = messages.find_message(account_id, message.mid)
        if existing is not None:
            return outcome.fill(existing, "duplicate", "mid already stored")
        outcome.reason = "no customer id in the message"
        return outcome
    if isinstance(event, EditEvent):
        return changes.apply_edit(event, account_id, account_ig, customer, outcome)
    if isinstance(event, ReactionEvent):
        return changes.apply_reaction(event, account_id, outcome)
    if isinstance(event, SeenEvent):
        return changes.apply_seen(event, account_id, account_ig, customer, outcome)
    if isinstance(event, ReferralEvent):
        return changes.apply_referral(event, account_id, customer, outcome)
    outcome.reason = f"unhandled event {outcome.type}"
    return outcome


def _prepare(event: Event, create_accounts: bool) -> tuple[Outcome, Target | None]:
    """The event's Outcome so far, and its account and customer when it applies at all."""
    outcome = Outcome(index=event.index, type=event_type(event), action="ignored", note=event.note)
    if isinstance(event, IgnoredEvent):
        outcome.reason = event.reason
        return outcome, None
    if event.standby and not current_app.config.get("WEBHOOK_APPLY_STANDBY"):
        outcome.reason = "standby: another app owns this thread"
        return outcome, None
    account = _resolve_account(event, create_accounts, outcome)
    if account is None:
        return outcome, None
    account_id, account_ig = account
    outcome.account_id = account_id
    if is_comment(event):
        return outcome, (account_id, account_ig, None)
    is_business_sender = event.sender_id == account_ig
    customer = event.recipient_id if (getattr(event, "is_echo", False) or is_business_sender) else event.sender_id
    if customer == account_ig:
        outcome.reason = "the account itself is not a customer (self messaging)"
        return outcome, None
    outcome.customer_igsid = customer
    return outcome, (account_id, account_ig, customer)


# --- Accounts ------------------------------------------------------------------------------

_ACCOUNT_TTL = 60.0


def _account_cache() -> dict[str, tuple[int, str, float]]:
    return current_app.extensions.setdefault("inbox_ingest_accounts", {})


def _lookup_account(ig_user_id: str) -> tuple[int, str] | None:
    """(id, status) of the account with this professional id; known accounts are cached briefly."""
    cache = _account_cache()
    hit = cache.get(ig_user_id)
    now = time.monotonic()
    if hit and hit[2] > now:
        return hit[0], hit[1]
    row = db.session.execute(select(Account.id, Account.status).where(Account.ig_user_id == ig_user_id)).first()
    if row is None:
        cache.pop(ig_user_id, None)
        return None
    cache[ig_user_id] = (row.id, row.status, now + _ACCOUNT_TTL)
    return row.id, row.status


def _resolve_account(event: Event, create: bool, outcome: Outcome) -> tuple[int, str] | None:
    """The account an event belongs to: entry.id, else the business side of the item."""
    business_side = event.sender_id if getattr(event, "is_echo", False) else event.recipient_id
    if is_comment(event):
        business_side = None  # a comment's sender is the commenter; only entry.id names the account
    candidates = [c for c in (event.entry_id, business_side) if c]
    outcome.account = candidates[0] if candidates else None
    for ig_id in dict.fromkeys(candidates):
        found = _lookup_account(ig_id)
        if found is not None:
            outcome.account = ig_id
            account_id, status = found
            if status == "disabled":
                outcome.reason = "account disabled"
                return None
            return account_id, ig_id
    if not candidates:
        outcome.reason = "no account id in the event"
        return None
    if create and event.entry_id:
        try:
            account = add_account(event.entry_id)
        except AccountError as exc:
            if _lookup_account(event.entry_id) is None:
                outcome.reason = f"account not created: {exc}"
                return None
        else:
            log.info("created account %s from a webhook entry", account.ig_user_id)
        found = _lookup_account(event.entry_id)
        if found is not None:
            outcome.account = event.entry_id
            return found[0], event.entry_id
    outcome.reason = f"unknown account {outcome.account}"
    return None
