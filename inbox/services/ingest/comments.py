"""Comment events (`changes[]`: comments, live_comments, mentions) applied to the `comments` table.

`apply_comment_events(account_id, account_ig, events)` takes one account's batch of
parsed comment events and applies them in the caller's transaction (it never commits):
one row per (account, comment id), whatever the redeliveries and replays. A repeat is a
duplicate; the same id with another text is an edit (the earlier text is kept); a
deletion marks the row (one that arrives first leaves a tombstone, so the comment never
shows up later); hide/unhide set the flag. The business's own comments are recognised
(`from.self_ig_scoped_id`, or `from.id` is the account) and never treated as a
customer's: a reply typed in the inbox is claimed by its webhook instead of doubled.

Follow-ups are registered with `on_commit`: `comment.created` / `comment.updated` live
events, and for a new customer comment on an account with an active keyword rule the
`run_comment_automations` job.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists, select

from ...extensions import db, on_commit
from ...live.publish import publish_after_commit
from ...models import Automation, Comment, Post, utcnow
from ...queue import enqueue
from ..events import CommentEvent, MentionEvent
from ..products import posts
from .outcomes import Outcome, event_type


def apply_comment_events(account_id: int, account_ig: str, events: Sequence[CommentEvent | MentionEvent],
                         outcomes: Sequence[Outcome] | None = None) -> list[Outcome]:
    """Apply one account's comment events in order, in the caller's transaction; one Outcome each.

    `outcomes`, when given, are filled in place (one per event, same order); otherwise
    new ones are made.
    """
    if outcomes is None:
        outcomes = [Outcome(index=e.index, type=event_type(e), action="ignored") for e in events]
    for event, outcome in zip(events, outcomes):
        outcome.account, outcome.account_id = account_ig, account_id
        outcome.comment_id = event.comment_id
        outcome.media_id = event.media_id
    ids = {e.comment_id for e in events if e.comment_id}
    known: dict[str, Comment] = {}
    if ids:
        known = {c.comment_id: c for c in db.session.scalars(
            select(Comment).where(Comment.account_id == account_id, Comment.comment_id.in_(ids)))}
    post_ids = _posts(account_id, events)
    created: list[Comment] = []
    updated: list[Comment] = []
    for event, outcome in zip(events, outcomes):
        if isinstance(event, MentionEvent):
            _apply_mention(event, account_id, known, post_ids, created, outcome)
        else:
            _apply_comment(event, account_id, account_ig, known, post_ids, created, updated, outcome)
    if created:
        db.session.flush()
    for row in created:
        publish_after_commit(account_id, "comment.created", comment_id=row.id, post_id=row.post_id or 0)
    for row in dict.fromkeys(updated):
        if row not in created:
            publish_after_commit(account_id, "comment.updated", comment_id=row.id, post_id=row.post_id or 0)
    fresh = [row.id for row in created if not row.is_own and not row.deleted and row.field != "mentions"]
    if fresh:
        note_new_comments(account_id, fresh)
    return list(outcomes)


def _posts(account_id: int, events: Sequence[CommentEvent | MentionEvent]) -> dict[str, int]:
    """The Post row id of every media the events name (rows made when first seen)."""
    wanted: dict[str, CommentEvent | MentionEvent] = {}
    for event in events:
        if event.media_id and event.media_id not in wanted:
            wanted[event.media_id] = event
    if not wanted:
        return {}
    found = dict(db.session.execute(select(Post.media_id, Post.id).where(
        Post.account_id == account_id, Post.media_id.in_(list(wanted)))).all())
    for media_id, event in wanted.items():
        if media_id not in found:
            via = "mention" if isinstance(event, MentionEvent) else "comment"
            kind = event.media_product_type if isinstance(event, CommentEvent) else None
            found[media_id] = posts.ensure_post(account_id, media_id, seen_via=via, media_product_type=kind).id
    return found


def _new_row(account_id: int, event: CommentEvent | MentionEvent, post_ids: dict[str, int], **values) -> Comment:
    now = utcnow()
    defaults = dict(account_id=account_id, comment_id=event.comment_id, media_id=event.media_id,
                    post_id=post_ids.get(event.media_id or ""), meta_timestamp=event.timestamp, edit_count=0,
                    hidden=False, deleted=False, is_own=False, is_read=False, created_at=now, updated_at=now)
    return Comment(**{**defaults, **values})


def _apply_mention(event: MentionEvent, account_id: int, known: dict[str, Comment], post_ids: dict[str, int],
                   created: list[Comment], outcome: Outcome) -> None:
    if event.comment_id is None:
        outcome.reason = "mention in a caption: no comment to show"
        return
    row = known.get(event.comment_id)
    if row is not None:
        outcome.comment_row_id = row.id
        outcome.action, outcome.reason = "duplicate", "comment already stored"
        return
    # Facebook Login sends ids only: the comment elsewhere that @mentions the account.
    row = _new_row(account_id, event, post_ids, field="mentions")
    db.session.add(row)
    known[event.comment_id] = row
    created.append(row)
    outcome.action = "created"


def _apply_comment(event: CommentEvent, account_id: int, account_ig: str, known: dict[str, Comment],
                   post_ids: dict[str, int], created: list[Comment], updated: list[Comment],
                   outcome: Outcome) -> None:
    own = event.own or (event.sender_id is not None and event.sender_id == account_ig)
    outcome.customer_igsid = None if own else event.sender_id
    outcome.direction = "out" if own else "in"
    row = known.get(event.comment_id)
    if row is not None:
        outcome.comment_row_id = row.id
        outcome.sender_kind = row.sender_kind or ("customer" if not row.is_own else None)
        _change(row, event, updated, outcome)
        return
    if own and event.verb in ("add", "edit"):
        row = _claim_own_reply(account_id, event)
        if row is not None:
            known[event.comment_id] = row
            updated.append(row)
            outcome.comment_row_id, outcome.sender_kind = row.id, row.sender_kind
            outcome.action, outcome.reason = "claimed", "our public reply, now with its Instagram id"
            return
    if event.verb in ("hide", "unhide"):
        outcome.reason = f"{event.verb} of an unknown comment"
        return
    row = _new_row(
        account_id, event, post_ids, field=event.field, parent_comment_id=event.parent_id,
        author_igsid=event.sender_id, author_username=event.username, is_own=own,
        sender_kind="instagram_app" if own else "customer", text=event.text, is_read=own,
        media_product_type=event.media_product_type, ad_id=event.ad_id, ad_title=event.ad_title,
    )
    if event.verb == "remove":
        row.deleted, row.deleted_at, row.is_read = True, utcnow(), True
        outcome.action, outcome.reason = "deleted", "deletion arrived before its comment"
    else:
        outcome.action = "created"
        if event.verb == "edit":
            outcome.reason = "edit arrived before its comment; stored with the new text"
    outcome.sender_kind = row.sender_kind
    db.session.add(row)
    known[event.comment_id] = row
    created.append(row)


def _change(row: Comment, event: CommentEvent, updated: list[Comment], outcome: Outcome) -> None:
    """A comment we hold, seen again: a repeat, an edit, a deletion, hide or unhide."""
    if event.verb == "remove":
        if row.deleted:
            outcome.action, outcome.reason = "duplicate", "already deleted"
            return
        row.deleted, row.deleted_at, row.is_read, row.action = True, utcnow(), True, None
        updated.append(row)
        outcome.action = "deleted"
        return
    if event.verb in ("hide", "unhide"):
        hidden = event.verb == "hide"
        if row.hidden == hidden:
            outcome.action, outcome.reason = "duplicate", f"already {'hidden' if hidden else 'shown'}"
            return
        row.hidden = hidden
        updated.append(row)
        outcome.action, outcome.reason = "updated", "hidden" if hidden else "shown again"
        return
    if row.deleted:
        outcome.action, outcome.reason = "duplicate", "the comment was deleted"
        return
    if event.text is None or event.text == row.text:
        outcome.action, outcome.reason = "duplicate", "comment already stored"
        return
    if event.text in (row.previous_texts or []):
        # A redelivery of a version we replaced: comment changes carry no edit counter.
        outcome.action, outcome.reason = "duplicate", "an earlier version of the comment"
        return
    row.previous_texts = [*(row.previous_texts or []), row.text or ""]
    row.text = event.text
    row.edit_count = (row.edit_count or 0) + 1
    row.updated_at = utcnow()
    updated.append(row)
    outcome.action, outcome.reason = "updated", f"edited ({row.edit_count})"


def _claim_own_reply(account_id: int, event: CommentEvent) -> Comment | None:
    """Our public reply still waiting for its id, with this parent and text (oldest first)."""
    wanted = " ".join((event.text or "").split())
    candidates = db.session.scalars(
        select(Comment).where(Comment.account_id == account_id, Comment.comment_id.is_(None),
                              Comment.is_own.is_(True), Comment.parent_comment_id == event.parent_id)
        .order_by(Comment.id).with_for_update())
    for row in candidates:
        if " ".join((row.text or "").split()) == wanted:
            row.comment_id = event.comment_id
            row.status = "sent"
            row.action = None if row.action == "reply" else row.action
            return row
    return None


# --- Follow-ups --------------------------------------------------------------------------

def note_new_comments(account_id: int, comment_ids: list[int]) -> None:
    """New customer comments: run the account's keyword rules on them after the commit (if it has any)."""
    active = db.session.scalar(select(exists().where(Automation.account_id == account_id,
                                                     Automation.active.is_(True))))
    if not active:
        return
    ids = list(comment_ids)
    on_commit(lambda: [enqueue("inbox.tasks.run_comment_automations", comment_id, queue="default", retries=3,
                               retry_intervals=[10, 60, 300]) for comment_id in ids])
