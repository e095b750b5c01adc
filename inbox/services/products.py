"""Products: the catalogue, posts and their links, and the assignment of conversations.

The rule (ARCHITECTURE.md section 4), for each piece of evidence a message carries (a
shared post or reel, an ad's post or ad id, a shop product id):

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

import csv
import io
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ..extensions import db, on_commit
from ..live.publish import publish_after_commit
from ..models import (Account, AssignmentEvent, Attachment, Conversation, Message, Post, PostProduct, Product,
                      StaffUser, utcnow)
from ..queue import enqueue
from . import accounts_maintenance, jobruns
from .events import POST_ATTACHMENT_TYPES, read_id

log = logging.getLogger(__name__)

LOAD_OWN_MEDIA = "load_own_media"
MAX_IMPORT_ROWS = 5000
MAX_KEYWORDS = 50
_RETRIES = 3
# What a source is called in plain words.
SOURCE_LABELS = {"post_link": "linked post", "ad": "ad", "product_referral": "shop product",
                 "manual": "chosen by hand", "auto_link": "auto-linked post"}


class ProductError(ValueError):
    """Bad input for the catalogue or a link: the message is shown to staff as is."""


class NotFoundError(LookupError):
    """An id that is not in this account (routes answer 404)."""


# --- Small helpers ------------------------------------------------------------------------

def short_id(value: str | None) -> str:
    """A long Instagram id as people read it: 17912345678901234 -> 1791…1234."""
    value = str(value or "")
    return value if len(value) <= 10 else f"{value[:4]}…{value[-4:]}"


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


def split_keywords(value: str | list[str] | None) -> list[str]:
    """Comma-separated keywords, trimmed, blanks and repeats (any case) dropped."""
    parts = value if isinstance(value, list) else str(value or "").replace("\n", ",").split(",")
    out, seen = [], set()
    for part in parts:
        word = " ".join(str(part).split())
        if word and word.casefold() not in seen:
            seen.add(word.casefold())
            out.append(word[:100])
    return out[:MAX_KEYWORDS]


@lru_cache(maxsize=8192)
def _pattern(term: str) -> re.Pattern:
    # Word boundaries that also hold for SKUs starting or ending with "-" or digits.
    return re.compile(rf"(?<!\w){re.escape(term)}(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class Match:
    product_id: int
    sku: str
    name: str
    matched: tuple[str, ...]  # "SKU RD-1", "keyword “red dress”"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.product_id, "sku": self.sku, "name": self.name, "matched": list(self.matched)}


def match_products(products: list[Product], caption: str | None) -> list[Match]:
    """The products whose SKU or a keyword appears in the caption (word boundaries, any case)."""
    if not caption:
        return []
    out = []
    for product in products:
        hits = []
        if product.sku and _pattern(product.sku).search(caption):
            hits.append(f"SKU {product.sku}")
        for word in split_keywords(product.keywords):
            if _pattern(word).search(caption):
                hits.append(f"keyword “{word}”")
        if hits:
            out.append(Match(product.id, product.sku, product.name, tuple(hits)))
    return out


# Compiled catalogues per account, reused while the active products are unchanged.
_CATALOGUES: dict[int, tuple[tuple, list]] = {}


def _catalogue(account_id: int) -> list[tuple[int, str, str, list[tuple[str, re.Pattern]]]]:
    """(id, sku, name, [(what, pattern)]) of the active products, compiled once per change."""
    active = (Product.account_id == account_id, Product.active.is_(True))
    key = tuple(db.session.execute(select(func.count(), func.max(Product.updated_at), func.sum(Product.id))
                                   .where(*active)).one())
    cached = _CATALOGUES.get(account_id)
    if cached is not None and cached[0] == key:
        return cached[1]
    entries = []
    for pid, sku, name, keywords in db.session.execute(
            select(Product.id, Product.sku, Product.name, Product.keywords).where(*active)
            .order_by(func.lower(Product.name), Product.id)):
        terms = [(f"SKU {sku}", _pattern(sku))] if sku else []
        terms += [(f"keyword “{word}”", _pattern(word)) for word in split_keywords(keywords)]
        entries.append((pid, sku, name, terms))
    _CATALOGUES[account_id] = (key, entries)
    return entries


def match_catalogue(account_id: int, caption: str | None) -> list[Match]:
    """match_products over the account's active catalogue (compiled patterns cached)."""
    if not caption:
        return []
    out = []
    for pid, sku, name, terms in _catalogue(account_id):
        hits = tuple(what for what, pattern in terms if pattern.search(caption))
        if hits:
            out.append(Match(pid, sku, name, hits))
    return out


def _staff_name(user_id: int | None) -> str:
    if user_id is None:
        return "someone"
    user = db.session.get(StaffUser, user_id)
    return user.display_name if user is not None else "someone"


# --- Catalogue ----------------------------------------------------------------------------

def _clean_product(name: Any, sku: Any, price: Any = None, keywords: Any = None,
                   currency: Any = None) -> dict[str, Any]:
    name = " ".join(str(name or "").split())
    sku = str(sku or "").strip()
    if not name:
        raise ProductError("A product needs a name.")
    if len(name) > 255:
        raise ProductError("The name is longer than 255 characters.")
    if not sku:
        raise ProductError("A product needs a SKU.")
    if len(sku) > 64 or any(c.isspace() for c in sku):
        raise ProductError(f"The SKU {sku[:64]!r} must be at most 64 characters with no spaces.")
    value = None
    if price not in (None, ""):
        try:
            value = Decimal(str(price).strip().replace(",", "."))
        except InvalidOperation:
            raise ProductError(f"The price {str(price)[:20]!r} is not a number.") from None
        if not value.is_finite() or value < 0 or value >= Decimal("1e10"):
            raise ProductError(f"The price {str(price)[:20]!r} is out of range.")
        value = value.quantize(Decimal("0.01"))
    currency = str(currency or "").strip().upper() or None
    if currency and not re.fullmatch(r"[A-Z]{3}", currency):
        raise ProductError(f"The currency {currency[:10]!r} is not a 3-letter code.")
    return {"name": name, "sku": sku, "price": value, "currency": currency,
            "keywords": ", ".join(split_keywords(keywords))}


def _sku_taken(account_id: int, sku: str, *, other_than: int | None = None) -> Product | None:
    query = select(Product).where(Product.account_id == account_id, func.lower(Product.sku) == sku.lower())
    if other_than is not None:
        query = query.where(Product.id != other_than)
    return db.session.scalars(query).first()


def create_product(account_id: int, *, name: Any, sku: Any, price: Any = None, keywords: Any = None,
                   currency: Any = None) -> Product:
    """Add a product to the account's catalogue (committed); ProductError on bad input."""
    values = _clean_product(name, sku, price, keywords, currency)
    taken = _sku_taken(account_id, values["sku"])
    if taken is not None:
        raise ProductError(f"SKU {values['sku']} is already used by {taken.name}.")
    product = Product(account_id=account_id, active=True, **values)
    db.session.add(product)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ProductError(f"SKU {values['sku']} is already used.") from None
    return product


def update_product(account_id: int, product_id: int, *, name: Any, sku: Any, price: Any = None,
                   keywords: Any = None, currency: Any = None) -> Product:
    """Change a product (committed)."""
    product = get_product(account_id, product_id)
    values = _clean_product(name, sku, price, keywords, currency)
    taken = _sku_taken(account_id, values["sku"], other_than=product.id)
    if taken is not None:
        raise ProductError(f"SKU {values['sku']} is already used by {taken.name}.")
    for key, value in values.items():
        setattr(product, key, value)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ProductError(f"SKU {values['sku']} is already used.") from None
    return product


def set_active(account_id: int, product_id: int, active: bool) -> Product:
    """Archive (or restore) a product: archived ones are not matched, offered or assigned."""
    product = get_product(account_id, product_id)
    product.active = active
    db.session.commit()
    return product


def get_product(account_id: int, product_id: int) -> Product:
    product = db.session.scalars(select(Product).where(Product.id == product_id,
                                                       Product.account_id == account_id)).first()
    if product is None:
        raise NotFoundError("No such product.")
    return product


def find_by_sku(account_id: int, sku: str) -> Product | None:
    return db.session.scalars(select(Product).where(Product.account_id == account_id,
                                                    func.lower(Product.sku) == str(sku).strip().lower())).first()


def list_products(account_id: int, *, include_archived: bool = False) -> list[Product]:
    query = select(Product).where(Product.account_id == account_id)
    if not include_archived:
        query = query.where(Product.active.is_(True))
    return list(db.session.scalars(query.order_by(Product.active.desc(), func.lower(Product.name), Product.id)))


def product_stats(account_id: int) -> dict[int, dict[str, int]]:
    """Per product: linked posts and conversations assigned to it."""
    posts = dict(db.session.execute(select(PostProduct.product_id, func.count())
                                    .where(PostProduct.account_id == account_id)
                                    .group_by(PostProduct.product_id)).all())
    convs = dict(db.session.execute(select(Conversation.product_id, func.count())
                                    .where(Conversation.account_id == account_id, Conversation.product_id.is_not(None))
                                    .group_by(Conversation.product_id)).all())
    return {pid: {"posts": posts.get(pid, 0), "conversations": convs.get(pid, 0)} for pid in set(posts) | set(convs)}


@dataclass
class ImportReport:
    created: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"line", "sku", "name", "reason"}
    error: str | None = None  # the whole file was refused

    @property
    def ok(self) -> bool:
        return self.error is None


def import_products_csv(account_id: int, data: bytes | str) -> ImportReport:
    """Add products from a CSV (columns sku, name, and optionally price, currency, keywords).

    Rows that cannot be added (SKU already in the catalogue or earlier in the file, no
    name, no SKU, a bad price) are reported with their line and reason; the others are
    added together in one commit.
    """
    report = ImportReport()
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            report.error = "The file is not UTF-8 text. Save it as CSV (UTF-8) and try again."
            return report
    reader = csv.DictReader(io.StringIO(data))
    try:
        header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        report.error = f"The file is not a CSV: {exc}."
        return report
    if "sku" not in header or "name" not in header:
        report.error = "The first line must name the columns, with at least sku and name."
        return report
    reader.fieldnames = header
    existing = {sku.lower(): name for sku, name in db.session.execute(
        select(Product.sku, Product.name).where(Product.account_id == account_id))}
    in_file: dict[str, int] = {}
    try:
        for row in reader:
            line = reader.line_num
            if len(report.created) + len(report.rejected) >= MAX_IMPORT_ROWS:
                report.error = f"Only the first {MAX_IMPORT_ROWS} rows were read; split the file."
                break
            if not any((v or "").strip() for k, v in row.items() if k is not None and isinstance(v, str)):
                continue  # blank line
            sku, name = (row.get("sku") or "").strip(), (row.get("name") or "").strip()
            entry = {"line": line, "sku": sku[:64], "name": name[:255]}
            try:
                values = _clean_product(name, sku, row.get("price"), row.get("keywords"), row.get("currency"))
            except ProductError as exc:
                report.rejected.append({**entry, "reason": str(exc)})
                continue
            key = values["sku"].lower()
            if key in existing:
                report.rejected.append({**entry, "reason": f"SKU {values['sku']} is already in the catalogue "
                                                           f"({existing[key]})."})
                continue
            if key in in_file:
                report.rejected.append({**entry, "reason": f"SKU {values['sku']} already appears on line "
                                                           f"{in_file[key]} of this file."})
                continue
            in_file[key] = line
            db.session.add(Product(account_id=account_id, active=True, **values))
            report.created.append(entry)
    except csv.Error as exc:
        db.session.rollback()
        return ImportReport(error=f"The file is not a valid CSV (line {reader.line_num}): {exc}.")
    try:
        db.session.commit()
    except IntegrityError:  # someone added one of these SKUs meanwhile
        db.session.rollback()
        return ImportReport(error="Another change to the catalogue happened during the import; nothing was "
                                  "added. Import the file again.")
    return report


# --- Posts --------------------------------------------------------------------------------

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
    from sqlalchemy.orm import selectinload

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


def conversations_for_post(account_id: int, media_id: str, limit: int = 5) -> int:
    """How many conversations shared this media (shown on the posts page)."""
    return db.session.scalar(
        select(func.count(func.distinct(Message.conversation_id))).join(Attachment, Attachment.message_id == Message.id)
        .where(Attachment.account_id == account_id, Attachment.media_id == media_id)) or 0


def link_post(account_id: int, post_id: int, product_id: int, user_id: int | None, *,
              message_id: int | None = None) -> PostProduct:
    """Link a post to a product by hand (replacing any link), committed.

    When linked from a shared-post card in a thread (message_id), that conversation is
    assigned too, as the evidence it is (a choice made by hand there still wins).
    """
    for attempt in range(_RETRIES):
        try:
            link = _link_post(account_id, post_id, product_id, user_id, message_id)
            db.session.commit()
            return link
        except IntegrityError:
            db.session.rollback()
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _link_post(account_id: int, post_id: int, product_id: int, user_id: int | None,
               message_id: int | None) -> PostProduct:
    post = get_post(account_id, post_id)
    product = get_product(account_id, product_id)
    if not product.active:
        raise ProductError(f"{product.label} is archived; restore it before linking posts to it.")
    name = _staff_name(user_id)
    link = db.session.scalars(select(PostProduct).where(PostProduct.post_id == post.id)).first()
    if link is None:
        link = PostProduct(account_id=account_id, post_id=post.id)
        db.session.add(link)
    link.product_id = product.id
    link.auto_linked = False
    link.linked_by_user_id = user_id
    link.linked_reason = f"linked by hand by {name}"
    link.source_message_id = message_id
    link.created_at = utcnow()
    db.session.flush()
    if message_id is not None:
        message = db.session.get(Message, message_id)
        if message is not None and message.account_id == account_id:
            kind = next((a.type for a in message.attachments if a.media_id == post.media_id), "ig_post")
            ev = Evidence(kind=kind, media_id=post.media_id, title=None)
            conversation = _lock_conversation(message.conversation_id)
            phrase = f"{_evidence_phrase(ev)}, linked to it by hand by {name} just now"
            _decide(conversation, message, ev, product, "post_link", phrase)
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


def link_attachment(account_id: int, attachment_id: int, product_id: int, user_id: int | None) -> PostProduct:
    """Link the post a thread card shows to a product, and assign that conversation."""
    attachment, post = post_for_attachment(account_id, attachment_id)
    return link_post(account_id, post.id, product_id, user_id, message_id=attachment.message_id)


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
                         _cached_products(attachment.account_id))


def _cached_products(account_id: int) -> list[Product]:
    from flask import g, has_app_context

    if not has_app_context():
        return list_products(account_id)
    cache = g.setdefault("_products_by_account", {})
    if account_id not in cache:
        cache[account_id] = list_products(account_id)
    return cache[account_id]


# --- Own media (a background run) --------------------------------------------------------

def start_load_own_media(account_id: int, user_id: int | None = None, *, enqueue_job: bool = True):
    """Start loading the account's own posts through the Graph API, or return the run going."""
    return jobruns.start_or_get_running(LOAD_OWN_MEDIA, account_id, "inbox.tasks.load_own_media",
                                        user_id=user_id, queue="low", enqueue_job=enqueue_job)


def load_own_media(job_run_id: int) -> None:
    """The run: page through /me/media and store each post (caption, permalink, type)."""
    from .accounts import mark_reconnect_needed
    from .graph import GraphClient, TokenInvalid

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


def _own_media(account: Account, post: Post) -> str | None:
    """The caption of the account's own post from the Graph API (None: not ours, or no caption)."""
    from .graph import GraphClient, InvalidRequest, PermissionDenied, TokenInvalid

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


# --- Evidence -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Evidence:
    """One piece of product evidence in a message."""

    kind: str  # ig_post, share, ig_reel, reel, ad, product_referral
    media_id: str | None = None  # the post (for an ad: its post_id, else its ad id)
    title: str | None = None  # the caption the webhook carried (an ad: its title)
    ad_id: str | None = None
    product_ref: str | None = None  # a shop product id

    @property
    def key(self) -> str | None:
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
    return out


def _evidence_phrase(ev: Evidence) -> str:
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
    if ev.kind in ("ig_reel", "reel"):
        return f"Shared reel {short_id(ev.media_id)}"
    if ev.kind == "ad":
        if ev.ad_id and ev.media_id != ev.ad_id:
            return f"The post {short_id(ev.media_id)} of ad {short_id(ev.ad_id)}"
        return f"Ad {short_id(ev.ad_id or ev.media_id)}"
    return f"Shared post {short_id(ev.media_id)}"


def note_evidence(message_id: int) -> None:
    """Called inside the ingest (or resync) transaction for a message that carries evidence.

    Registers, on commit, the `assign_from_message` job (one per message however often it
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


from sqlalchemy import event as _sa_event  # noqa: E402
from sqlalchemy.orm import Session as _Session  # noqa: E402


@_sa_event.listens_for(_Session, "after_commit")
@_sa_event.listens_for(_Session, "after_rollback")
def _forget_noted(session) -> None:
    session.info.pop("products_noted", None)
    session.info.pop("products_published", None)


def assign_from_message(message_id: int) -> list[AssignmentEvent]:
    """Apply a message's product evidence (the job): link lookups, auto-link, assignment.

    Idempotent: evidence that already has an event for this message is not decided again
    (a retried job records nothing twice). Raises RateLimited/Transient from the Graph API
    so RQ retries later.
    """
    for attempt in range(_RETRIES):
        try:
            made = _assign_from_message(message_id)
            db.session.commit()
            return made
        except IntegrityError:  # another job linked the same post at the same moment: decide again
            db.session.rollback()
            if attempt == _RETRIES - 1:
                raise
        except BaseException:
            db.session.rollback()
            raise
    raise AssertionError("unreachable")


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


def _lock_conversation(conversation_id: int) -> Conversation:
    return db.session.scalars(select(Conversation).where(Conversation.id == conversation_id)
                              .with_for_update().execution_options(populate_existing=True)).one()


def _resolve(account: Account, message: Message, ev: Evidence) -> AssignmentEvent:
    # The conversation row is locked only when deciding, never across a Graph call.
    def conversation() -> Conversation:
        return _lock_conversation(message.conversation_id)

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
    seen_via = "ad" if ev.kind == "ad" else ("ig_reel" if ev.kind in ("ig_reel", "reel") else "share")
    # An ad's title stands in for a caption until the Graph API gives the post's own.
    post = ensure_post(account.id, ev.media_id, caption=ev.title, seen_via=seen_via,
                       media_product_type="AD" if ev.kind == "ad" and ev.media_id == ev.ad_id else None)
    source = "ad" if ev.kind == "ad" else "post_link"
    found = db.session.execute(select(PostProduct, Product).join(Product, Product.id == PostProduct.product_id)
                               .where(PostProduct.post_id == post.id)
                               .execution_options(populate_existing=True)).first()
    if found is not None:
        link, product = found
        how = (f"linked to it automatically on {_day(link.created_at)}" if link.auto_linked
               else f"linked to it by hand{' by ' + _staff_name(link.linked_by_user_id) if link.linked_by_user_id else ''}"
                    f" on {_day(link.created_at)}")
        if not product.active:
            return _record(conversation(), message, ev, "skipped", source,
                           f"{_what(ev)} is linked to {product.label}, which is archived: not assigned.",
                           product=product)
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
    phrase = f"{_evidence_phrase(ev)}, whose {whence} matched {matched}; linked it automatically"
    return _decide(conversation(), message, ev, product, "auto_link", phrase, candidates=[match.as_dict()])


def _caption(account: Account, post: Post, ev: Evidence) -> tuple[str | None, str]:
    """(caption, where it came from): own posts and ads ask the Graph API, shares use the webhook."""
    if post.is_own and post.caption:
        return post.caption, "caption"
    if ev.kind != "ad" and ev.title:
        return ev.title, "caption"
    if ev.kind != "ad" or ev.media_id != ev.ad_id:
        caption = _own_media(account, post)
        if caption:
            return caption, "caption"
    if ev.kind == "ad" and ev.title:
        return ev.title, "ad title"
    return None, "caption"


def _current_evidence_time(conversation: Conversation) -> int | None:
    """Meta's time of the message whose evidence made the current automatic assignment."""
    return db.session.scalar(
        select(Message.meta_timestamp).join(AssignmentEvent, AssignmentEvent.message_id == Message.id)
        .where(AssignmentEvent.conversation_id == conversation.id, AssignmentEvent.outcome == "assigned",
               AssignmentEvent.source != "manual")
        .order_by(AssignmentEvent.id.desc()).limit(1))


def _decide(conversation: Conversation, message: Message | None, ev: Evidence, product: Product, source: str,
            phrase: str, candidates: list | None = None) -> AssignmentEvent:
    """Apply automatic evidence for `product` to the conversation, or record why not."""
    if conversation.assignment_source == "manual":
        current = db.session.get(Product, conversation.product_id) if conversation.product_id else None
        who = _staff_name(conversation.assigned_by_user_id)
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
        if newest is not None and newest > message.meta_timestamp:
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
    name = _staff_name(user_id)
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
            f"{_staff_name(user_id)} let the inbox choose again: new evidence will assign the product.",
            actor=user_id)
    db.session.commit()
    return conversation


# --- The story ----------------------------------------------------------------------------

@dataclass
class ProductPanel:
    """What the thread's product header shows."""

    conversation: Conversation
    product: Product | None
    source: str | None
    assigned_by: str | None
    options: list[Product]
    events: list[AssignmentEvent]  # newest first
    total_events: int

    @property
    def is_manual(self) -> bool:
        return self.source == "manual"

    @property
    def summary(self) -> str:
        if self.product is None:
            return "No product chosen by hand" if self.is_manual else "No product yet"
        if self.is_manual:
            return f"Chosen by hand by {self.assigned_by}"
        return f"Assigned automatically ({SOURCE_LABELS.get(self.source or '', self.source or 'evidence')})"


PANEL_EVENTS = 20


def product_panel(conversation: Conversation, *, limit: int = PANEL_EVENTS) -> ProductPanel:
    """The dropdown's options, the current product and the latest events, for one conversation."""
    account_id = conversation.account_id
    product = db.session.get(Product, conversation.product_id) if conversation.product_id else None
    options = list(_cached_products(account_id))
    if product is not None and all(p.id != product.id for p in options):
        options.append(product)
    events = list(db.session.scalars(select(AssignmentEvent).where(AssignmentEvent.conversation_id == conversation.id)
                                     .order_by(AssignmentEvent.id.desc()).limit(limit)))
    total = len(events)
    if total == limit:
        total = db.session.scalar(select(func.count()).select_from(AssignmentEvent)
                                  .where(AssignmentEvent.conversation_id == conversation.id)) or 0
    who = _staff_name(conversation.assigned_by_user_id) if conversation.assignment_source == "manual" else None
    return ProductPanel(conversation, product, conversation.assignment_source, who, options, events, total)


def get_conversation(account_id: int, conversation_id: int) -> Conversation:
    conversation = db.session.scalars(select(Conversation).where(Conversation.id == conversation_id,
                                                                 Conversation.account_id == account_id)).first()
    if conversation is None:
        raise NotFoundError("No such conversation.")
    return conversation


def explain(conversation: Conversation) -> list[str]:
    """The conversation's product story for support, oldest decision first (the CLI prints it)."""
    from ..display import display_name
    from ..models import Identity

    account = db.session.get(Account, conversation.account_id)
    identity = db.session.scalars(select(Identity).where(Identity.account_id == account.id,
                                                         Identity.igsid == conversation.customer_igsid)).first()
    panel = product_panel(conversation, limit=1)
    lines = [f"Conversation {conversation.id}: {display_name(identity, conversation.customer_igsid)} "
             f"(IGSID {conversation.customer_igsid}) with {account.label}"]
    if panel.product is not None:
        lines.append(f"Product: {panel.product.label}{'' if panel.product.active else ' [archived]'}. "
                     f"{panel.summary}, {conversation.assigned_at.strftime('%-d %b %Y %H:%M UTC') if conversation.assigned_at else ''}".rstrip(", "))
    else:
        lines.append(f"Product: none. {panel.summary}.")
    events = list(db.session.scalars(select(AssignmentEvent).where(AssignmentEvent.conversation_id == conversation.id)
                                     .order_by(AssignmentEvent.id)))
    if not events:
        lines.append("No product evidence yet: no shared post, ad or shop product in this conversation.")
        return lines
    lines.append("Why:")
    for e in events:
        evidence = f" [{e.evidence_kind} {e.evidence_id}]" if e.evidence_id else ""
        lines.append(f"  {e.created_at.strftime('%Y-%m-%d %H:%M')}  {e.outcome:<9} {e.reason}{evidence}")
    return lines


def find_conversation(account_id: int, customer_igsid: str) -> Conversation | None:
    return db.session.scalars(select(Conversation).where(Conversation.account_id == account_id,
                                                         Conversation.customer_igsid == str(customer_igsid))).first()


def search_filter(query, product_filter: str | None):
    """For the conversation list: "none" (no product) or a product id; None leaves it as is."""
    if not product_filter:
        return query
    if product_filter == "none":
        return query.where(Conversation.product_id.is_(None))
    try:
        return query.where(Conversation.product_id == int(product_filter))
    except ValueError:
        return query
