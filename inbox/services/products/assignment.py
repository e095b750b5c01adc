"""Which product a conversation is about: evidence, decisions, and a choice made by hand.

For each piece of evidence a message carries (a shared post or reel, an ad's post or ad
id, a shop product id):

1. the post is linked to a product, by hand or automatically -> assign the conversation
   to it. An existing link is a reason to assign, never a reason to skip;
2. not linked -> try to auto-link it: its caption (the webhook's title, or the Graph
   media object for the account's own posts and ads) is matched against SKUs and
   keywords; exactly one product -> link it (auto_linked) and assign; none or several ->
   record that, with the candidates;
3. a choice made by hand in the thread's dropdown wins: later automatic evidence is
   recorded, not applied; newer automatic evidence replaces older (by Meta's message
   time, so a late job never undoes a newer decision).

Every decision is an AssignmentEvent whose `reason` is the sentence staff read in the
thread's "Why this product" panel and `flask --app inbox conversations explain` prints.

Where it runs: ingestion calls `note_evidence(message_id)` inside its transaction; that
only registers, on commit, the job `assign_from_message` with the id `assign-<message>`.
The decision is not made inline: in the batched ingest path the message's attachments are
written after the hook, a failure here must never fail a webhook, and the ingest hot path
stays as measured. A linked post needs no Meta call, so the job is quick; the worker
picks it up at once and publishes `conversation.updated`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from ...extensions import db, on_commit
from ...live.publish import publish_after_commit
from ...models import Account, AssignmentEvent, Comment, Conversation, Message, Post, PostProduct, Product, utcnow
from ...queue import enqueue
from .. import activity, conversations, staff
from ..events import POST_ATTACHMENT_TYPES, read_id
from ..transactions import retry_on_conflict
from . import posts
from .catalogue import NotFoundError, ProductError, find_by_sku, get_product, match_catalogue, short_id


def _day(value: datetime | None) -> str:
    if value is None:
        return ""
    now = utcnow()
    return value.strftime("%-d %b" if value.year == now.year else "%-d %b %Y")


def _quote(text: str | None, limit: int = 120) -> str:
    text = " ".join((text or "").split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return f"“{text}”"


@dataclass(frozen=True)
class Evidence:
    """One piece of product evidence in a message."""

    kind: str  # ig_post, share, ig_reel, reel, ad, product_referral, comment
    media_id: str | None = None  # the post (for an ad: its post_id, else its ad id)
    title: str | None = None  # the caption the webhook carried (an ad: its title)
    ad_id: str | None = None
    product_ref: str | None = None  # a shop product id
    comment: Comment | None = None  # a comment the conversation's private reply answered

    @property
    def key(self) -> str | None:
        if self.kind == "comment":
            return self.comment.comment_id if self.comment is not None else None
        return self.product_ref if self.kind == "product_referral" else self.media_id


def message_evidence(message: Message) -> list[Evidence]:
    """Every piece of evidence a message carries, in order (pure, given the loaded rows)."""
    out: list[Evidence] = []
    for a in sorted(message.attachments, key=lambda a: a.position):
        if a.type in POST_ATTACHMENT_TYPES:
            out.append(Evidence(kind=a.type, media_id=a.media_id, title=a.title))
    referral = message.referral if isinstance(message.referral, dict) else None
    if referral:
        context = referral.get("ads_context_data") if isinstance(referral.get("ads_context_data"), dict) else {}
        ad_id, post_id = read_id(referral.get("ad_id")), read_id(context.get("post_id"))
        title = context.get("ad_title") if isinstance(context.get("ad_title"), str) else None
        if post_id or ad_id:
            out.append(Evidence(kind="ad", media_id=post_id or ad_id, title=title, ad_id=ad_id))
        shop = read_id(context.get("product_id"))
        product = referral.get("product") if isinstance(referral.get("product"), dict) else {}
        shop = shop or read_id(product.get("id"))
        if shop:
            out.append(Evidence(kind="product_referral", product_ref=shop))
    if message.comment_id and message.comment is not None and message.comment.media_id:
        # A private reply: the comment it answers is about that comment's post.
        out.append(Evidence(kind="comment", media_id=message.comment.media_id, comment=message.comment))
    return out


def _commenter(comment: Comment) -> str:
    return f"@{comment.author_username}" if comment.author_username else "the customer"


def _post_name(post: Post | None, media_id: str | None) -> str:
    caption = " ".join(((post.caption if post is not None else None) or "").split())
    if caption:
        return f"post {_quote(caption, 40)}"
    return f"post {short_id(media_id)}"


def _evidence_phrase(ev: Evidence, post: Post | None = None) -> str:
    if ev.kind == "comment":
        said = f" {_quote(ev.comment.text, 60)}" if ev.comment.text else ""
        return f"{_commenter(ev.comment)} commented on {_post_name(post, ev.media_id)}{said}"
    if ev.kind in ("ig_reel", "reel"):
        return f"the customer shared reel {short_id(ev.media_id)}"
    if ev.kind == "ad":
        title = f" {_quote(ev.title, 60)}" if ev.title else ""
        if ev.ad_id and ev.media_id != ev.ad_id:
            return f"the customer came from ad {short_id(ev.ad_id)}{title} for post {short_id(ev.media_id)}"
        return f"the customer came from ad {short_id(ev.ad_id or ev.media_id)}{title}"
    if ev.kind == "product_referral":
        return f"the customer asked about shop product {ev.product_ref}"
    return f"the customer shared post {short_id(ev.media_id)}"


def _what(ev: Evidence) -> str:
    """The evidence as the subject of a sentence: "Shared post 1791…1234"."""
    if ev.kind == "comment":
        return f"The post {short_id(ev.media_id)} {_commenter(ev.comment)} commented on"
    if ev.kind in ("ig_reel", "reel"):
        return f"Shared reel {short_id(ev.media_id)}"
    if ev.kind == "ad":
        if ev.ad_id and ev.media_id != ev.ad_id:
            return f"The post {short_id(ev.media_id)} of ad {short_id(ev.ad_id)}"
        return f"Ad {short_id(ev.ad_id or ev.media_id)}"
    return f"Shared post {short_id(ev.media_id)}"


def note_evidence(message_id: int) -> None:
    """Called inside the ingest (or resync) transaction for a message that carries evidence.

    Registers, on commit, the job `assign-<message_id>` (one per message however often it
    is noted). The decision is the job's: see the module docstring.
    """
    noted: set = db.session.info.setdefault("products_noted", set())
    if message_id in noted:
        return
    noted.add(message_id)
    on_commit(lambda: _enqueue_assignment(message_id))


def _enqueue_assignment(message_id: int) -> None:
    enqueue("inbox.tasks.assign_from_message", message_id, queue="default", retries=3,
            retry_intervals=[10, 60, 300])


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_noted(session: Session) -> None:
    session.info.pop("products_noted", None)
    session.info.pop("products_published", None)


def assign_from_message(message_id: int) -> list[AssignmentEvent]:
    """Apply a message's product evidence (the job): link lookups, auto-link, assignment.

    Idempotent: evidence that already has an event for this message is not decided again
    (a retried job records nothing twice). Raises RateLimited/Transient from the Graph API
    so RQ retries later. Another job linking the same post at the same moment makes it
    decide again.
    """
    return retry_on_conflict(lambda: _assign_from_message(message_id))


def _assign_from_message(message_id: int) -> list[AssignmentEvent]:
    message = db.session.get(Message, message_id)
    if message is None or message.is_deleted:
        return []
    evidence = message_evidence(message)
    if not evidence:
        return []
    done = {(k, e) for k, e in db.session.execute(
        select(AssignmentEvent.evidence_kind, AssignmentEvent.evidence_id)
        .where(AssignmentEvent.message_id == message_id))}
    account = db.session.get(Account, message.account_id)
    made = []
    for ev in evidence:
        if (ev.kind, ev.key) in done:
            continue
        done.add((ev.kind, ev.key))
        made.append(_resolve(account, message, ev))
    return made


def _resolve(account: Account, message: Message, ev: Evidence) -> AssignmentEvent:
    # The conversation row is locked only when deciding, never across a Graph call.
    def conversation() -> Conversation:
        return conversations.lock_conversation(message.conversation_id)

    if ev.kind == "product_referral":
        product = find_by_sku(account.id, ev.product_ref)
        if product is None:
            return _record(conversation(), message, ev, "no_match", "product_referral",
                           f"The customer asked about shop product {ev.product_ref}, which is not in the "
                           f"catalogue (no product has that SKU).")
        if not product.active:
            return _record(conversation(), message, ev, "skipped", "product_referral",
                           f"The customer asked about shop product {ev.product_ref}: {product.label} is archived.",
                           product=product)
        return _decide(conversation(), message, ev, product, "product_referral", _evidence_phrase(ev))
    if not ev.media_id:
        return _record(conversation(), message, ev, "skipped", "post_link",
                       "The customer shared a post, but Instagram did not send its id: nothing to match.")
    seen_via = {"ad": "ad", "ig_reel": "ig_reel", "reel": "ig_reel", "comment": "comment"}.get(ev.kind, "share")
    # An ad's title stands in for a caption until the Graph API gives the post's own.
    post = posts.ensure_post(account.id, ev.media_id, caption=ev.title, seen_via=seen_via,
                       media_product_type="AD" if ev.kind == "ad" and ev.media_id == ev.ad_id else None)
    source = {"ad": "ad", "comment": "comment"}.get(ev.kind, "post_link")
    found = db.session.execute(select(PostProduct, Product).join(Product, Product.id == PostProduct.product_id)
                               .where(PostProduct.post_id == post.id)
                               .execution_options(populate_existing=True)).first()
    if found is not None:
        link, product = found
        by = f" by {staff.name_of(link.linked_by_user_id)}" if link.linked_by_user_id else ""
        how = (f"linked to it automatically on {_day(link.created_at)}" if link.auto_linked
               else f"linked to it by hand{by} on {_day(link.created_at)}")
        if not product.active:
            return _record(conversation(), message, ev, "skipped", source,
                           f"{_what(ev)} is linked to {product.label}, which is archived: not assigned.",
                           product=product)
        if ev.kind == "comment":
            # "commented on <post> (<product>)": the post's product, named beside the post.
            said = f" {_quote(ev.comment.text, 60)}" if ev.comment.text else ""
            phrase = (f"{_commenter(ev.comment)} commented on {_post_name(post, ev.media_id)} ({product.name}){said}; "
                      f"the post was {how}")
            return _decide(conversation(), message, ev, product, source, phrase)
        return _decide(conversation(), message, ev, product, source, f"{_evidence_phrase(ev)}, {how}")
    # Not linked: read the caption and try to link it.
    caption, whence = _caption(account, post, ev)
    if not caption:
        why = ("it belongs to another account, and Instagram sent no caption" if not post.is_own
               else "it has no caption")
        return _record(conversation(), message, ev, "no_match", "auto_link",
                       f"{_what(ev)} matched no product: {why}.")
    matches = match_catalogue(account.id, caption)
    if not matches:
        return _record(conversation(), message, ev, "no_match", "auto_link",
                       f"{_what(ev)} matched no product ({whence}: {_quote(caption)}).", candidates=[])
    if len(matches) > 1:
        names = ", ".join(f"{m.name} ({m.sku})" for m in matches)
        return _record(conversation(), message, ev, "ambiguous", "auto_link",
                       f"{_what(ev)} matched {len(matches)} products: {names}; not assigned, choose one "
                       f"({whence}: {_quote(caption)}).", candidates=[m.as_dict() for m in matches])
    match = matches[0]
    product = db.session.get(Product, match.product_id)
    matched = " and ".join(match.matched)
    db.session.add(PostProduct(account_id=account.id, post_id=post.id, product_id=product.id, auto_linked=True,
                               linked_reason=f"{whence} matched {matched}", source_message_id=message.id,
                               created_at=utcnow()))
    db.session.flush()  # a concurrent link of the same post fails here; the job decides again
    phrase = f"{_evidence_phrase(ev, post)}, whose {whence} matched {matched}; linked it automatically"
    return _decide(conversation(), message, ev, product, "auto_link", phrase, candidates=[match.as_dict()])


def _caption(account: Account, post: Post, ev: Evidence) -> tuple[str | None, str]:
    """(caption, where it came from): own posts and ads ask the Graph API, shares use the webhook."""
    if post.is_own and post.caption:
        return post.caption, "caption"
    if ev.kind not in ("ad", "comment") and ev.title:
        return ev.title, "caption"
    if ev.kind != "ad" or ev.media_id != ev.ad_id:
        caption = posts.own_media_caption(account, post)
        if caption:
            return caption, "caption"
    if ev.kind == "ad" and ev.title:
        return ev.title, "ad title"
    return None, "caption"


def _current_evidence_time(conversation: Conversation) -> int | None:
    """Meta's time of the evidence (a comment's, else its message's) that made the current automatic assignment."""
    return db.session.scalar(
        select(func.coalesce(Comment.meta_timestamp, Message.meta_timestamp))
        .select_from(AssignmentEvent)
        .outerjoin(Message, AssignmentEvent.message_id == Message.id)
        .outerjoin(Comment, AssignmentEvent.comment_id == Comment.id)
        .where(AssignmentEvent.conversation_id == conversation.id, AssignmentEvent.outcome == "assigned",
               AssignmentEvent.source != "manual")
        .order_by(AssignmentEvent.id.desc()).limit(1))


def _evidence_time(message: Message, ev: Evidence) -> int:
    """When the evidence happened: a comment's time for a private reply, else the message's."""
    return ev.comment.meta_timestamp if ev.comment is not None else message.meta_timestamp


def _decide(conversation: Conversation, message: Message | None, ev: Evidence, product: Product, source: str,
            phrase: str, candidates: list | None = None) -> AssignmentEvent:
    """Apply automatic evidence for `product` to the conversation, or record why not."""
    if conversation.assignment_source == "manual":
        current = db.session.get(Product, conversation.product_id) if conversation.product_id else None
        who = staff.name_of(conversation.assigned_by_user_id)
        kept = f"Kept {current.label}" if current else "Kept no product"
        said = _with_product(phrase, product)
        return _record(conversation, message, ev, "kept", source,
                       f"{kept}: chosen by hand by {who}. {said[0].upper()}{said[1:]}: recorded, not applied.",
                       product=product, candidates=candidates)
    if conversation.product_id == product.id:
        return _record(conversation, message, ev, "kept", source,
                       f"Still {product.label}: {phrase}.", product=product, candidates=candidates)
    if conversation.product_id is not None and message is not None:
        newest = _current_evidence_time(conversation)
        if newest is not None and newest > _evidence_time(message, ev):
            current = db.session.get(Product, conversation.product_id)
            return _record(conversation, message, ev, "skipped", source,
                           f"Not applied: {_with_product(phrase, product)}; newer evidence already assigned "
                           f"{current.label if current else 'another product'}.", product=product,
                           candidates=candidates)
    previous = conversation.product_id
    now = utcnow()
    conversation.product_id = product.id
    conversation.assignment_source = source
    conversation.assigned_by_user_id = None
    conversation.assigned_at = now
    activity.record_event(conversation.account_id, conversation.id, "product_set", detail=product.name)
    return _record(conversation, message, ev, "assigned", source, f"Assigned to {product.label}: {phrase}.",
                   product=product, previous=previous, candidates=candidates)


def _with_product(phrase: str, product: Product) -> str:
    """The phrase naming the product it points at ("linked to it" -> "linked to Red Dress (RD-1)")."""
    if "linked to it" in phrase:
        return phrase.replace("linked to it", f"linked to {product.label}", 1)
    if "linked it automatically" in phrase:
        return phrase.replace("linked it automatically", f"linked it to {product.label} automatically", 1)
    return f"{phrase} ({product.label})"


def _record(conversation: Conversation, message: Message | None, ev: Evidence | None, outcome: str, source: str,
            reason: str, *, product: Product | None = None, previous: int | None = None,
            candidates: list | None = None, actor: int | None = None) -> AssignmentEvent:
    row = AssignmentEvent(account_id=conversation.account_id, conversation_id=conversation.id,
                          message_id=message.id if message is not None else None, source=source, outcome=outcome,
                          product_id=product.id if product is not None else None,
                          previous_product_id=previous if outcome == "assigned" else conversation.product_id,
                          evidence_kind=ev.kind if ev else "manual", evidence_id=(ev.key if ev else None),
                          comment_id=ev.comment.id if ev is not None and ev.comment is not None else None,
                          candidates=candidates, reason=reason, actor_user_id=actor, created_at=utcnow())
    db.session.add(row)
    _publish_product(conversation.account_id, conversation.id)
    return row


def _publish_product(account_id: int, conversation_id: int) -> None:
    """`conversation.updated` with `product=1`, once per conversation and transaction.

    The flag tells the live push to render the thread's product panel; other
    `conversation.updated` events (every new message) leave it alone.
    """
    published: set = db.session.info.setdefault("products_published", set())
    if conversation_id not in published:
        published.add(conversation_id)
        publish_after_commit(account_id, "conversation.updated", conversation_id=conversation_id, product=1)


# --- A choice by hand ---------------------------------------------------------------------

def set_conversation_product(account_id: int, conversation_id: int, product_id: int | None,
                             user_id: int) -> Conversation:
    """Staff chose a product (or none) in the thread's dropdown: it wins over later evidence."""
    conversation = db.session.scalars(select(Conversation).where(Conversation.id == conversation_id,
                                                                 Conversation.account_id == account_id)
                                      .with_for_update()).first()
    if conversation is None:
        raise NotFoundError("No such conversation.")
    product = get_product(account_id, product_id) if product_id else None
    if product is not None and not product.active and product.id != conversation.product_id:
        raise ProductError(f"{product.label} is archived.")
    if conversation.assignment_source == "manual" and conversation.product_id == (product.id if product else None):
        db.session.rollback()
        return conversation
    name = staff.name_of(user_id)
    previous = db.session.get(Product, conversation.product_id) if conversation.product_id else None
    if product is not None:
        reason = f"Set to {product.label} by hand by {name}"
    else:
        reason = f"No product: chosen by hand by {name}"
    if previous is not None and (product is None or previous.id != product.id):
        reason += f" (was {previous.label})"
    conversation.product_id = product.id if product else None
    conversation.assignment_source = "manual"
    conversation.assigned_by_user_id = user_id
    conversation.assigned_at = utcnow()
    _record(conversation, None, None, "assigned", "manual", reason + ".", product=product,
            previous=previous.id if previous else None, actor=user_id)
    activity.record_event(account_id, conversation.id, "product_set", actor_user_id=user_id,
                          detail=product.name if product else None)
    db.session.commit()
    return conversation


def clear_manual_choice(account_id: int, conversation_id: int, user_id: int) -> Conversation:
    """Hand the conversation back to automatic assignment (its product stays until new evidence)."""
    conversation = db.session.scalars(select(Conversation).where(Conversation.id == conversation_id,
                                                                 Conversation.account_id == account_id)
                                      .with_for_update()).first()
    if conversation is None:
        raise NotFoundError("No such conversation.")
    if conversation.assignment_source != "manual":
        db.session.rollback()
        return conversation
    conversation.assignment_source = None
    conversation.assigned_by_user_id = None
    _record(conversation, None, None, "skipped", "manual",
            f"{staff.name_of(user_id)} let the inbox choose again: new evidence will assign the product.",
            actor=user_id)
    db.session.commit()
    return conversation


def link_attachment(account_id: int, attachment_id: int, product_id: int, user_id: int | None) -> PostProduct:
    """Link the post a thread card shows to a product, and assign that conversation (committed).

    The card's message is evidence like any other: a choice made by hand in the thread
    still wins.
    """
    attachment, post = posts.post_for_attachment(account_id, attachment_id)
    return retry_on_conflict(lambda: _link_from_thread(account_id, post, product_id, user_id, attachment.message_id))


def _link_from_thread(account_id: int, post: Post, product_id: int, user_id: int | None,
                      message_id: int) -> PostProduct:
    link = posts.set_link(account_id, post, product_id, user_id, message_id=message_id)
    message = db.session.get(Message, message_id)
    if message is not None and message.account_id == account_id:
        kind = next((a.type for a in message.attachments if a.media_id == post.media_id), "ig_post")
        ev = Evidence(kind=kind, media_id=post.media_id, title=None)
        conversation = conversations.lock_conversation(message.conversation_id)
        phrase = f"{_evidence_phrase(ev)}, linked to it by hand by {staff.name_of(user_id)} just now"
        _decide(conversation, message, ev, get_product(account_id, product_id), "post_link", phrase)
    return link
