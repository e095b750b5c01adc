"""Comments on the account's posts: the comments view, and what staff (or a rule) do with them.

- The view: `post_summaries` (posts with the newest comments first, their product and
  unread count; filter by product), `post_comments` (one post's comments, threaded),
  `mark_post_read`, `list_comments` (the CLI).
- Public actions go through the Comments API in a job (routes never call Meta):
  `reply_publicly` writes our reply as a pending own row and queues `send_public_reply`;
  `set_hidden` and `delete_comment` record the action in flight on the row and queue
  `run_comment_action`. The row is the obligation: it says what is owed until the job
  ends it (done, or failed with a reason staff can read).
- `reply_privately`: a DM to the commenter through the Send API with
  `recipient.comment_id` (services/sending.py sends it like any reply: pending row, job,
  echo). Instagram allows one per comment, within 7 days of it; `private_reply_refusal`
  says why not, and the button shows it. The reply opens (or joins) the conversation with
  that person and is product evidence for it (the post's product, by the usual rule).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ..extensions import db, on_commit
from ..live.publish import publish_after_commit
from ..models import (
    Account, AutomationRun, Comment, Conversation, Message, Post, PostProduct, Product, ms_to_datetime, utcnow,
)
from ..queue import enqueue
from . import activity, conversations, graph, identities
from .accounts import mark_reconnect_needed
from .products import assignment
from .products.catalogue import short_id
from .sending import RetryLater, enqueue_send, normalise_text, text_problem

PRIVATE_REPLY_WINDOW = timedelta(days=7)
MAX_COMMENT_CHARS = 2200  # Instagram's limit for a comment
ACTION_RETRIES = [5, 30, 120, 600]


class CommentRefused(Exception):
    """The action cannot be taken; `reason` is shown to the staff member as is."""

    def __init__(self, reason: str, *, status: int = 422):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class CommentNotFound(CommentRefused):
    def __init__(self, what: str = "comment"):
        super().__init__(f"No such {what}.", status=404)


# --- What the view shows ---------------------------------------------------------------------

@dataclass
class PostSummary:
    """One post in the comments list."""

    post: Post
    product: Product | None
    comments: int
    unread: int
    last_at_ms: int


@dataclass
class CommentNode:
    """A comment with its replies, its private reply and what rules did with it."""

    comment: Comment
    replies: list[CommentNode] = field(default_factory=list)
    private_reply: Message | None = None
    runs: list[AutomationRun] = field(default_factory=list)


def post_label(post: Post | None, media_id: str | None = None, limit: int = 48) -> str:
    """How a post is named in sentences: its caption's start in quotes, else "post 1791…1234"."""
    caption = " ".join(((post.caption if post is not None else None) or "").split())
    if caption:
        return f"“{caption[:limit - 1].rstrip()}…”" if len(caption) > limit else f"“{caption}”"
    return f"post {short_id(post.media_id if post is not None else media_id)}"


def post_summaries(account_id: int, *, product_id: int | None = None, limit: int = 100) -> list[PostSummary]:
    """Posts with comments, the most recently commented first (with product and unread count)."""
    unread = func.sum(case((and_(Comment.is_read.is_(False), Comment.deleted.is_(False)), 1), else_=0))
    counts = (select(Comment.post_id, func.count().label("n"), unread.label("unread"),
                     func.max(Comment.meta_timestamp).label("last"))
              .where(Comment.account_id == account_id, Comment.post_id.is_not(None))
              .group_by(Comment.post_id).subquery())
    query = (select(Post, Product, counts.c.n, counts.c.unread, counts.c.last)
             .join(counts, counts.c.post_id == Post.id)
             .outerjoin(PostProduct, PostProduct.post_id == Post.id)
             .outerjoin(Product, Product.id == PostProduct.product_id)
             .where(Post.account_id == account_id)
             .order_by(counts.c.last.desc(), Post.id.desc()).limit(limit))
    if product_id:
        query = query.where(PostProduct.product_id == product_id)
    return [PostSummary(post, product, n, int(unread or 0), int(last or 0))
            for post, product, n, unread, last in db.session.execute(query)]


def post_summary(account_id: int, post_id: int) -> PostSummary | None:
    """One post's list row (None: not this account's, or no comments)."""
    return next((s for s in _summaries_for(account_id, [post_id])), None)


def _summaries_for(account_id: int, post_ids: list[int]) -> list[PostSummary]:
    unread = func.sum(case((and_(Comment.is_read.is_(False), Comment.deleted.is_(False)), 1), else_=0))
    rows = db.session.execute(
        select(Post, Product, func.count(Comment.id), unread, func.max(Comment.meta_timestamp))
        .join(Comment, Comment.post_id == Post.id)
        .outerjoin(PostProduct, PostProduct.post_id == Post.id)
        .outerjoin(Product, Product.id == PostProduct.product_id)
        .where(Post.account_id == account_id, Post.id.in_(post_ids))
        .group_by(Post.id, Product.id))
    return [PostSummary(post, product, n, int(u or 0), int(last or 0)) for post, product, n, u, last in rows]


def get_post(account_id: int, post_id: int) -> tuple[Post, Product | None]:
    row = db.session.execute(select(Post, Product).outerjoin(PostProduct, PostProduct.post_id == Post.id)
                             .outerjoin(Product, Product.id == PostProduct.product_id)
                             .where(Post.id == post_id, Post.account_id == account_id)).first()
    if row is None:
        raise CommentNotFound("post")
    return row[0], row[1]


def get_comment(account_id: int, comment_id: int) -> Comment:
    comment = db.session.scalar(select(Comment).where(Comment.id == comment_id, Comment.account_id == account_id))
    if comment is None:
        raise CommentNotFound()
    return comment


def post_comments(account_id: int, post_id: int) -> list[CommentNode]:
    """A post's comments as a thread: top-level comments oldest first, each with its replies."""
    rows = list(db.session.scalars(select(Comment).where(Comment.account_id == account_id,
                                                         Comment.post_id == post_id)
                                   .order_by(Comment.meta_timestamp, Comment.id)))
    nodes = {row.id: CommentNode(row) for row in rows}
    _attach_extras(account_id, nodes)
    by_ig = {row.comment_id: nodes[row.id] for row in rows if row.comment_id}
    top: list[CommentNode] = []
    for row in rows:
        parent = by_ig.get(row.parent_comment_id) if row.parent_comment_id else None
        (parent.replies if parent is not None and parent.comment is not row else top).append(nodes[row.id])
    return top


def comment_node(account_id: int, comment_id: int) -> CommentNode | None:
    """One comment with its extras and its replies (Instagram threads one level deep)."""
    row = db.session.scalar(select(Comment).where(Comment.id == comment_id, Comment.account_id == account_id))
    if row is None:
        return None
    replies = [] if not row.comment_id else list(db.session.scalars(
        select(Comment).where(Comment.account_id == account_id, Comment.parent_comment_id == row.comment_id,
                              Comment.id != row.id).order_by(Comment.meta_timestamp, Comment.id)))
    nodes = {r.id: CommentNode(r) for r in [row, *replies]}
    _attach_extras(account_id, nodes)
    nodes[row.id].replies = [nodes[r.id] for r in replies]
    return nodes[row.id]


def parent_row_id(comment: Comment) -> int | None:
    """Our row id of the comment this one replies to (None: top-level, or the parent is unknown)."""
    if not comment.parent_comment_id:
        return None
    return db.session.scalar(select(Comment.id).where(Comment.account_id == comment.account_id,
                                                      Comment.comment_id == comment.parent_comment_id))


def _attach_extras(account_id: int, nodes: dict[int, CommentNode]) -> None:
    if not nodes:
        return
    ids = list(nodes)
    for message in db.session.scalars(select(Message).where(Message.account_id == account_id,
                                                            Message.comment_id.in_(ids))):
        nodes[message.comment_id].private_reply = message
    for run in db.session.scalars(select(AutomationRun).where(AutomationRun.comment_id.in_(ids))
                                  .order_by(AutomationRun.id)):
        nodes[run.comment_id].runs.append(run)


def mark_post_read(account_id: int, post_id: int) -> int:
    """Staff opened a post's comments: none of them is new any more (committed); returns how many changed."""
    changed = db.session.execute(
        update(Comment).where(Comment.account_id == account_id, Comment.post_id == post_id,
                              Comment.is_read.is_(False))
        .values(is_read=True).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return changed or 0


def list_comments(account_id: int, *, media_id: str | None = None, limit: int = 500) -> list[tuple[Comment, Post | None,
                                                                                                   Product | None]]:
    """Comments newest first, each with its post and the post's product (the CLI's listing)."""
    query = (select(Comment, Post, Product).outerjoin(Post, Post.id == Comment.post_id)
             .outerjoin(PostProduct, PostProduct.post_id == Post.id)
             .outerjoin(Product, Product.id == PostProduct.product_id)
             .where(Comment.account_id == account_id)
             .order_by(Comment.meta_timestamp.desc(), Comment.id.desc()).limit(limit))
    if media_id:
        query = query.where(Comment.media_id == media_id)
    return [tuple(row) for row in db.session.execute(query)]


# --- Private replies ---------------------------------------------------------------------------

def private_reply_refusal(comment: Comment, account: Account | None = None, *, now=None,
                          replied: Message | None = None, loaded: bool = False) -> str | None:
    """Why this comment cannot get a private reply now (None: it can). The button shows it.

    `replied` is the comment's private reply when the caller loaded it (`loaded`: then None
    means there is none, and no query is made).
    """
    now = now or utcnow()
    if account is not None and account.status != "active":
        return "Replies are paused until an admin reconnects this Instagram account."
    if comment.is_own:
        return "This is the account's own comment."
    if comment.deleted:
        return "The comment was deleted."
    if comment.field == "mentions":
        return "Private replies go only to comments on the account's own posts."
    if not comment.author_igsid or not comment.comment_id:
        return "Instagram did not say who wrote this comment."
    if replied is not None or (not loaded and comment_has_private_reply(comment.id)):
        return "Already replied privately: Instagram allows one private reply per comment."
    written = ms_to_datetime(comment.meta_timestamp)
    if now - written > PRIVATE_REPLY_WINDOW:
        return (f"Instagram allows a private reply only within 7 days of the comment "
                f"(written {written.strftime('%-d %b')}).")
    return None


def comment_has_private_reply(comment_id: int) -> bool:
    return db.session.scalar(select(Message.id).where(Message.comment_id == comment_id).limit(1)) is not None


def reply_privately(account_id: int, comment_id: int, user_id: int | None, text: str, client_token: str | None, *,
                    sender_kind: str = "staff") -> Message:
    """Write the private reply as a pending outgoing message in the commenter's conversation and
    queue its send (committed); CommentRefused says why not.

    The conversation is opened when the commenter never wrote; the reply is evidence of the
    post's product for it. A double submit (same client token) returns the first message.
    """
    token = (client_token or "").strip()[:64] or None
    if token is not None:
        existing = db.session.scalar(select(Message).where(Message.client_token == token))
        if existing is not None:
            if existing.account_id != account_id or existing.comment_id != comment_id:
                raise CommentRefused("This form was already used for another comment; reload the page.", status=409)
            return existing
    text = normalise_text(text)
    problem = text_problem(text)
    if problem:
        raise CommentRefused(problem)
    comment = get_comment(account_id, comment_id)
    account = db.session.get(Account, account_id)
    reason = private_reply_refusal(comment, account)
    if reason:
        raise CommentRefused(reason, status=409 if comment_has_private_reply(comment.id) else 422)
    conversation = _open_conversation(account_id, comment.author_igsid)
    if comment.author_username:
        identities.save_participant(account, comment.author_igsid, comment.author_username)
    now = utcnow()
    message = Message(
        account_id=account_id, conversation_id=conversation.id, mid=None, direction="out", sender_kind=sender_kind,
        sender_igsid=account.ig_user_id, text=text, status="pending", sent_by_user_id=user_id, client_token=token,
        comment_id=comment.id, send_attempts=0, meta_timestamp=int(time.time() * 1000), created_at=now,
        updated_at=now, is_unsupported=False, is_deleted=False, edit_count=0,
    )
    db.session.add(message)
    try:
        db.session.flush()
    except IntegrityError:  # another reply to this comment (or this token) got there first
        db.session.rollback()
        raise CommentRefused("Already replied privately: Instagram allows one private reply per comment.",
                             status=409) from None
    conversations.touch(conversation, message, preview=conversations.preview_text(text))
    comment.is_read = True
    quoted = " ".join((comment.text or "").split())
    activity.record_event(account_id, conversation.id, "private_reply", actor_user_id=user_id,
                          detail=f"“{quoted[:80]}{'…' if len(quoted) > 80 else ''}”" if quoted else None)
    enqueue_send(message.id)
    assignment.note_evidence(message.id)
    publish_after_commit(account_id, "message.created", conversation_id=conversation.id, message_id=message.id)
    publish_after_commit(account_id, "conversation.updated", conversation_id=conversation.id)
    publish_after_commit(account_id, "comment.updated", comment_id=comment.id, post_id=comment.post_id or 0)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise CommentRefused("Already replied privately: Instagram allows one private reply per comment.",
                             status=409) from None
    return message


def _open_conversation(account_id: int, igsid: str) -> Conversation:
    """The account's conversation with this person, locked; created when they never wrote."""
    conversation = conversations.lock_customer_conversation(account_id, igsid)
    if conversation is not None:
        return conversation
    now = utcnow()
    builder = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    db.session.execute(builder(Conversation).values(
        account_id=account_id, customer_igsid=igsid, unread_count=0, status="open", created_at=now, updated_at=now,
    ).on_conflict_do_nothing(index_elements=["account_id", "customer_igsid"]))
    return conversations.lock_customer_conversation(account_id, igsid)


# --- Public replies, hide, delete --------------------------------------------------------------

def reply_publicly(account_id: int, comment_id: int, user_id: int | None, text: str, *,
                   sender_kind: str = "staff", automation_id: int | None = None) -> Comment:
    """Our public reply under a comment: a pending own row now, the Comments API in a job (committed)."""
    text = " ".join((text or "").replace("\r", "").split(" ")).strip()
    if not text:
        raise CommentRefused("Write a reply first.")
    if len(text) > MAX_COMMENT_CHARS:
        raise CommentRefused(f"Instagram accepts comments of at most {MAX_COMMENT_CHARS:,} characters.")
    comment = get_comment(account_id, comment_id)
    account = db.session.get(Account, account_id)
    if account.status != "active":
        raise CommentRefused("Replies are paused until an admin reconnects this Instagram account.")
    if comment.deleted:
        raise CommentRefused("The comment was deleted.")
    if not comment.comment_id:
        raise CommentRefused("This reply has not reached Instagram yet; wait a moment.")
    # Instagram threads one level deep: a reply to a reply answers its top-level comment.
    parent = comment.parent_comment_id or comment.comment_id
    now = utcnow()
    row = Comment(account_id=account_id, comment_id=None, field=comment.field, media_id=comment.media_id,
                  post_id=comment.post_id, parent_comment_id=parent, author_igsid=account.ig_user_id,
                  author_username=account.username, is_own=True, sender_kind=sender_kind, sent_by_user_id=user_id,
                  automation_id=automation_id, text=text, edit_count=0, hidden=False, deleted=False, is_read=True,
                  status="pending", action="reply", meta_timestamp=int(time.time() * 1000), created_at=now,
                  updated_at=now)
    db.session.add(row)
    comment.is_read = True
    db.session.flush()
    _enqueue(row.id, "send_public_reply")
    publish_after_commit(account_id, "comment.created", comment_id=row.id, post_id=row.post_id or 0)
    db.session.commit()
    return row


def set_hidden(account_id: int, comment_id: int, hidden: bool) -> Comment:
    """Hide a comment from everyone but its author (or show it again), through a job (committed)."""
    comment = get_comment(account_id, comment_id)
    if comment.deleted:
        raise CommentRefused("The comment was deleted.")
    if comment.is_own:
        raise CommentRefused("The account's own comments cannot be hidden; delete it instead.")
    return _start_action(comment, "hide" if hidden else "unhide")


def delete_comment(account_id: int, comment_id: int) -> Comment:
    """Delete a comment on the account's post (anyone's) through a job (committed)."""
    comment = get_comment(account_id, comment_id)
    if comment.deleted:
        return comment
    return _start_action(comment, "delete")


def _start_action(comment: Comment, action: str) -> Comment:
    if not comment.comment_id:
        raise CommentRefused("This reply has not reached Instagram yet; wait a moment.")
    if comment.action == action:
        return comment  # a double click
    if comment.action is not None:
        raise CommentRefused("Another change to this comment is still on its way to Instagram.", status=409)
    account = db.session.get(Account, comment.account_id)
    if account.status != "active":
        raise CommentRefused("Paused until an admin reconnects this Instagram account.")
    comment.action, comment.action_error = action, None
    _enqueue(comment.id, "run_comment_action")
    publish_after_commit(comment.account_id, "comment.updated", comment_id=comment.id, post_id=comment.post_id or 0)
    db.session.commit()
    return comment


def _enqueue(comment_id: int, task: str) -> None:
    on_commit(lambda: enqueue(f"inbox.tasks.{task}", comment_id, queue="high", timeout=120,
                              retries=len(ACTION_RETRIES), retry_intervals=ACTION_RETRIES))


def send_public_reply(comment_id: int) -> str:
    """The job: post our pending public reply through the Comments API; returns what happened."""
    row = db.session.get(Comment, comment_id)
    if row is None or not row.is_own or row.status != "pending":
        return "nothing-to-do"
    if row.comment_id:  # its webhook claimed it already
        row.status, row.action = "sent", None
        db.session.commit()
        return "already-sent"
    account = db.session.get(Account, row.account_id)
    parent, text = row.parent_comment_id, row.text or ""
    db.session.commit()
    try:
        new_id = graph.GraphClient.for_account(account).reply_to_comment(parent, text)
    except graph.AmbiguousSendFailure:
        return _end_action(comment_id, "Instagram did not confirm the reply; check the post before you try again.",
                           status="failed")
    except (graph.RateLimited, graph.Transient) as exc:
        raise RetryLater(str(exc)) from None
    except graph.GraphError as exc:
        return _failed(comment_id, exc, status="failed")
    row = db.session.get(Comment, comment_id)
    taken = db.session.scalar(select(Comment).where(Comment.account_id == row.account_id,
                                                    Comment.comment_id == new_id, Comment.id != row.id))
    if taken is not None:
        # The webhook of our reply arrived first and made a row of it: ours replaces it.
        db.session.execute(update(AutomationRun).where(AutomationRun.reply_comment_id == taken.id)
                           .values(reply_comment_id=row.id))
        db.session.delete(taken)
        db.session.flush()
    row.comment_id, row.status, row.action, row.action_error = new_id, "sent", None, None
    publish_after_commit(row.account_id, "comment.updated", comment_id=row.id, post_id=row.post_id or 0)
    db.session.commit()
    return "sent"


def run_comment_action(comment_id: int) -> str:
    """The job: hide, show or delete a comment through the Comments API; returns what happened."""
    row = db.session.get(Comment, comment_id)
    if row is None or row.action not in ("hide", "unhide", "delete") or not row.comment_id:
        return "nothing-to-do"
    account = db.session.get(Account, row.account_id)
    action, ig_id = row.action, row.comment_id
    db.session.commit()
    try:
        client = graph.GraphClient.for_account(account)
        if action == "delete":
            client.delete_comment(ig_id)
        else:
            client.hide_comment(ig_id, hidden=action == "hide")
    except (graph.RateLimited, graph.Transient) as exc:
        raise RetryLater(str(exc)) from None
    except graph.NotFound:
        if action != "delete":
            return _failed(comment_id, graph.NotFound("Instagram no longer has this comment."))
        # Already gone on Instagram: deleting it is done.
    except graph.GraphError as exc:
        return _failed(comment_id, exc)
    row = db.session.get(Comment, comment_id)
    if action == "delete":
        row.deleted, row.deleted_at = True, utcnow()
    else:
        row.hidden = action == "hide"
    row.action, row.action_error = None, None
    publish_after_commit(row.account_id, "comment.updated", comment_id=row.id, post_id=row.post_id or 0)
    db.session.commit()
    return action


def _failed(comment_id: int, exc: graph.GraphError, *, status: str | None = None) -> str:
    detail = exc.message.rstrip(".") if exc.message else str(exc)
    if isinstance(exc, graph.TokenInvalid):
        reason = "Instagram refused this account's access token. An admin must reconnect the account."
    elif isinstance(exc, graph.NotFound):
        reason = "Instagram no longer has this comment (it was deleted, or the post is gone)."
    elif isinstance(exc, graph.PermissionDenied):
        reason = f"Instagram says this account may not do that ({detail})."
    else:
        reason = f"Instagram refused it ({detail})."
    result = _end_action(comment_id, reason, status=status)
    if isinstance(exc, graph.TokenInvalid):
        row = db.session.get(Comment, comment_id)
        mark_reconnect_needed(row.account_id, "Instagram refused the access token during a comment action.")
    return result


def _end_action(comment_id: int, reason: str, *, status: str | None = None) -> str:
    row = db.session.get(Comment, comment_id)
    row.action, row.action_error = None, reason
    if status is not None:
        row.status = status
    publish_after_commit(row.account_id, "comment.updated", comment_id=row.id, post_id=row.post_id or 0)
    db.session.commit()
    return "failed"


# --- Shared with automations and the thread ----------------------------------------------------

def private_reply_context(message: Message) -> tuple[Comment, Post | None] | None:
    """For a private reply: the comment it answers and that comment's post (None for other messages)."""
    if not message.comment_id:
        return None
    comment = message.comment
    if comment is None:
        return None
    return comment, db.session.get(Post, comment.post_id) if comment.post_id else None
