"""Posts seen in the inbox (shared, advertised, the account's own) and their links to products."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import selectinload

from ...extensions import db, on_commit
from ...models import Account, Attachment, Post, PostProduct, Product, utcnow
from .. import accounts_maintenance, jobruns, staff
from ..accounts import mark_reconnect_needed
from ..events import POST_ATTACHMENT_TYPES, read_id
from ..graph import GraphClient, InvalidRequest, PermissionDenied, TokenInvalid
from ..transactions import retry_on_conflict
from .catalogue import NotFoundError, ProductError, cached_products, get_product

LOAD_OWN_MEDIA = "load_own_media"


def _insert_ignore(model, values: dict[str, Any], keys: list[str]) -> None:
    builder = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    db.session.execute(builder(model).values(**values).on_conflict_do_nothing(index_elements=keys))


def ensure_post(account_id: int, media_id: str, *, caption: str | None = None, seen_via: str | None = None,
                media_product_type: str | None = None) -> Post:
    """The account's Post row for a media id, created when first seen (safe under concurrency)."""
    now = utcnow()
    query = select(Post).where(Post.account_id == account_id, Post.media_id == media_id)
    post = db.session.scalars(query).first()
    if post is None:  # first seen: insert, unless another transaction just did
        _insert_ignore(Post, {"account_id": account_id, "media_id": media_id, "caption": caption or None,
                              "seen_via": seen_via, "media_product_type": media_product_type, "is_own": False,
                              "first_seen_at": now, "last_seen_at": now}, ["account_id", "media_id"])
        post = db.session.scalars(query.execution_options(populate_existing=True)).one()
    post.last_seen_at = now
    if caption and not post.caption:
        post.caption = caption
    return post


def get_post(account_id: int, post_id: int) -> Post:
    post = db.session.scalars(select(Post).where(Post.id == post_id, Post.account_id == account_id)).first()
    if post is None:
        raise NotFoundError("No such post.")
    return post


def find_post(account_id: int, media_id: str) -> Post | None:
    return db.session.scalars(select(Post).where(Post.account_id == account_id,
                                                 Post.media_id == str(media_id).strip())).first()


POST_STATES = ("all", "manual", "auto", "unlinked")


def list_posts(account_id: int, state: str = "all", *, limit: int = 200) -> list[Post]:
    """Posts seen in the inbox and the account's own, newest first, with their links loaded."""
    query = (select(Post).where(Post.account_id == account_id)
             .options(selectinload(Post.link).selectinload(PostProduct.product))
             .order_by(Post.last_seen_at.desc(), Post.id.desc()).limit(limit))
    if state == "manual":
        query = query.join(PostProduct).where(PostProduct.auto_linked.is_(False))
    elif state == "auto":
        query = query.join(PostProduct).where(PostProduct.auto_linked.is_(True))
    elif state == "unlinked":
        query = query.outerjoin(PostProduct).where(PostProduct.id.is_(None))
    return list(db.session.scalars(query))


def post_counts(account_id: int) -> dict[str, int]:
    total = db.session.scalar(select(func.count()).select_from(Post).where(Post.account_id == account_id)) or 0
    rows = dict(db.session.execute(select(PostProduct.auto_linked, func.count())
                                   .where(PostProduct.account_id == account_id)
                                   .group_by(PostProduct.auto_linked)).all())
    manual, auto = rows.get(False, 0), rows.get(True, 0)
    return {"all": total, "manual": manual, "auto": auto, "unlinked": total - manual - auto}


def link_post(account_id: int, post_id: int, product_id: int, user_id: int | None) -> PostProduct:
    """Link a post to a product by hand (replacing any link), committed."""
    return retry_on_conflict(lambda: set_link(account_id, get_post(account_id, post_id), product_id, user_id))


def set_link(account_id: int, post: Post, product_id: int, user_id: int | None, *,
             message_id: int | None = None) -> PostProduct:
    """Link the post to a product by hand, replacing any link, in the caller's transaction.

    message_id: the thread message whose shared-post card it was linked from.
    """
    product = get_product(account_id, product_id)
    if not product.active:
        raise ProductError(f"{product.label} is archived; restore it before linking posts to it.")
    link = db.session.scalars(select(PostProduct).where(PostProduct.post_id == post.id)).first()
    if link is None:
        link = PostProduct(account_id=account_id, post_id=post.id)
        db.session.add(link)
    link.product_id = product.id
    link.auto_linked = False
    link.linked_by_user_id = user_id
    link.linked_reason = f"linked by hand by {staff.name_of(user_id)}"
    link.source_message_id = message_id
    link.created_at = utcnow()
    db.session.flush()
    return link


def unlink_post(account_id: int, post_id: int) -> Post:
    """Remove a post's link (committed); conversations keep the product they have."""
    post = get_post(account_id, post_id)
    db.session.execute(delete(PostProduct).where(PostProduct.post_id == post.id,
                                                 PostProduct.account_id == account_id))
    db.session.commit()
    db.session.expire(post)
    return post


def get_post_attachment(account_id: int, attachment_id: int) -> Attachment:
    """A shared-post attachment of the account (NotFoundError for anything else)."""
    attachment = db.session.scalars(select(Attachment).where(Attachment.id == attachment_id,
                                                             Attachment.account_id == account_id)).first()
    if attachment is None or attachment.type not in POST_ATTACHMENT_TYPES or not attachment.media_id:
        raise NotFoundError("No shared post there.")
    return attachment


def post_for_attachment(account_id: int, attachment_id: int) -> tuple[Attachment, Post]:
    """The Post a shared-post attachment points at (created when needed); committed."""
    attachment = get_post_attachment(account_id, attachment_id)
    post = ensure_post(account_id, attachment.media_id, caption=attachment.title,
                       seen_via="ig_reel" if attachment.type in ("ig_reel", "reel") else "share")
    db.session.commit()
    return attachment, post


@dataclass
class PostLinkState:
    """What a shared-post card shows: the post (None when it has no id) and its link."""

    attachment: Attachment
    post: Post | None
    link: PostProduct | None
    products: list[Product]


def post_link_state(attachment: Attachment) -> PostLinkState | None:
    """For `partials/_post_link.html`; None when the attachment is not a post with an id."""
    if attachment is None or attachment.type not in POST_ATTACHMENT_TYPES or not attachment.media_id:
        return None
    post = find_post(attachment.account_id, attachment.media_id)
    return PostLinkState(attachment, post, post.link if post is not None else None,
                         cached_products(attachment.account_id))


# --- Own media (a background run) --------------------------------------------------------

def start_load_own_media(account_id: int, user_id: int | None = None, *, enqueue_job: bool = True):
    """Start loading the account's own posts through the Graph API, or return the run going."""
    return jobruns.start_or_get_running(LOAD_OWN_MEDIA, account_id, "inbox.tasks.load_own_media",
                                        user_id=user_id, queue="low", enqueue_job=enqueue_job)


def load_own_media(job_run_id: int) -> None:
    """The run: page through /me/media and store each post (caption, permalink, type)."""
    with jobruns.running(job_run_id) as run:
        if run is None:
            return
        account = db.session.get(Account, run.account_id)
        summary = {"posts": 0, "new": 0}
        run.partial_summary = summary
        run.progress(0, None, force=True)
        try:
            client = GraphClient.for_account(account)
            for item in client.own_media(limit=50, max_pages=int(current_app.config.get("OWN_MEDIA_MAX_PAGES", 40))):
                media_id = read_id(item.get("id"))
                if not media_id:
                    continue
                created = _store_own_media(account.id, media_id, item)
                summary["posts"] += 1
                summary["new"] += int(created)
                if summary["posts"] % 50 == 0:
                    db.session.commit()
                    run.progress(summary["posts"])
            db.session.commit()
        except TokenInvalid as exc:
            db.session.rollback()
            mark_reconnect_needed(account.id, str(exc))
            run.finish(summary, state="failed", error="Instagram refused the account's token: reconnect it.")
            return
        run.progress(summary["posts"], summary["posts"], force=True)
        run.finish(summary)


def _store_own_media(account_id: int, media_id: str, item: dict[str, Any]) -> bool:
    existing = find_post(account_id, media_id)
    post = existing or ensure_post(account_id, media_id, seen_via="own_media")
    post.is_own = True
    post.caption = item.get("caption") if isinstance(item.get("caption"), str) else post.caption
    for key, attr in (("permalink", "permalink"), ("media_type", "media_type"),
                      ("media_product_type", "media_product_type"), ("username", "owner_username")):
        if isinstance(item.get(key), str):
            setattr(post, attr, item[key][:255] if attr != "permalink" else item[key])
    return existing is None


def own_media_caption(account: Account, post: Post) -> str | None:
    """The caption of the account's own post from the Graph API, stored on the post (None: not ours, or none)."""
    if account.status != "active":
        return None
    try:
        item = GraphClient.for_account(account).media(post.media_id)
    except (InvalidRequest, PermissionDenied):  # 100/33: someone else's post
        return None
    except TokenInvalid:
        # The daily check's job marks the account reconnect-needed (with the banner); the
        # decision goes on with what the webhook said.
        account_id = account.id
        on_commit(lambda: accounts_maintenance.request_check(account_id))
        return None
    _store_own_media(account.id, post.media_id, item)
    return post.caption

