"""Rows for tests: users and accounts through the app's own services; the inbox's rows as the app stores them.

Every method opens its own app context, commits, and returns the row detached (read its
columns anywhere; pass it, or its id, to the next call). Rows that only ingestion,
sending or the catalogue write in the app (conversations, messages, identities,
products, posts, links) are written here directly, following the conventions of those
writers, so a test can set up exactly the state it reads. A test of one of those writers
goes through it instead (a webhook, a reply, a service call).

    conversation = factory.conversation(account, "9001", messages=["Is it in stock?"])
    factory.message(conversation, "Yes, in M.", out=True)            # the owner's app (an echo)
    factory.message(conversation, "Sending…", out=True, status="pending")   # ours, no mid yet
    factory.message(conversation, attachments=["image", {"type": "share", "media_id": "1799"}])
    dress = factory.product(account, "Red dress", keywords="red dress, crimson")
    factory.link(factory.post(account, caption="Summer look"), dress)
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from inbox.extensions import db
from inbox.models import (Account, Attachment, Conversation, Identity, Message, Post, PostProduct, Product,
                          StaffUser, utcnow)
from inbox.services import accounts as account_service
from inbox.services import staff

PASSWORD = "correct horse battery"
_seq = itertools.count(1)
_clock = {"last_ms": 0}  # default Meta timestamps only go forward, whichever Factory made the last one


def _detached(obj):
    """Loaded, then detached, so tests can read it outside an app context."""
    db.session.refresh(obj)
    db.session.expunge(obj)
    return obj


def _id(row_or_id) -> int | None:
    return getattr(row_or_id, "id", row_or_id)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


class Factory:
    def __init__(self, app):
        self.app = app

    # --- People and accounts (through the services) ----------------------------------

    def user(self, email: str | None = None, *, name: str = "", superadmin: bool = False,
             password: str = PASSWORD) -> StaffUser:
        with self.app.app_context():
            user = staff.create_user(email or f"staff{next(_seq)}@example.com", password, name=name,
                                     superadmin=superadmin)
            return _detached(user)

    def account(self, ig_user_id: str | None = None, username: str | None = None, *, token: str | None = "TOKEN"):
        n = next(_seq)
        with self.app.app_context():
            account = account_service.add_account(ig_user_id or str(17840000000000000 + n),
                                                  username or f"shop{n}", token=token)
            return _detached(account)

    def grant(self, user, account, role: str = "agent"):
        with self.app.app_context():
            staff.grant(user.id, account.id, role)

    def staff_on(self, account, role: str = "agent", **kwargs) -> StaffUser:
        """A user with a role on an account."""
        user = self.user(**kwargs)
        self.grant(user, account, role)
        return user

    # --- Conversations and messages (as ingestion stores them) -----------------------

    def conversation(self, account, customer_igsid: str | None = None, *, messages: list[str | dict] = (),
                     **columns: Any) -> Conversation:
        """A conversation of account with a customer (a new IGSID unless given).

        `messages` are made in order with message(): a text, or a dict of its arguments
        ({"text": "hi", "out": True, "ts": ms, "mid": ...}). `columns` set the conversation's
        own (status, unread_count, product_id, graph_conversation_id, ...); unread_count
        and status are left to them: messages made here are not counted as unread.
        """
        with self.app.app_context():
            now = utcnow()
            conversation = Conversation(account_id=_id(account),
                                        customer_igsid=customer_igsid or f"91{next(_seq):014d}",
                                        unread_count=0, status="open", created_at=now, updated_at=now)
            for key, value in columns.items():
                setattr(conversation, key, value)
            db.session.add(conversation)
            db.session.commit()
            conversation_id = conversation.id
        for spec in messages:
            self.message(conversation_id, **({"text": spec} if isinstance(spec, str) else spec))
        with self.app.app_context():
            return _detached(db.session.get(Conversation, conversation_id))

    def message(self, conversation, text: str | None = "hello", *, out: bool = False, mid: str | None = None,
                ts: int | None = None, status: str | None = None, sender_kind: str | None = None,
                attachments: list[str | dict] = (), **columns: Any) -> Message:
        """A message in conversation, and the conversation's list row brought up to date.

        Incoming by default (from the conversation's customer). `out=True` is an outgoing
        one: the owner's Instagram app (`instagram_app`, status "sent") unless `status` is
        "pending" or "failed" (then ours, `staff`, and a pending one has no mid yet).
        `ts` is Meta's timestamp in ms (default: now, later than the factory's previous
        message). `attachments`: types ("image") or dicts of Attachment columns (with
        "type"). `columns`: any other Message column (reply_to_mid, client_token, ...).
        """
        if ts is None:
            ts = max(int(time.time() * 1000), _clock["last_ms"] + 1)
            _clock["last_ms"] = ts
        with self.app.app_context():
            conversation = db.session.get(Conversation, _id(conversation))
            account = conversation.account_id
            if out:
                from_app = status in (None, "sent", "seen") and sender_kind in (None, "instagram_app")
                kind = sender_kind or ("instagram_app" if from_app else "staff")
                status = status or "sent"
                sender = db.session.get(Account, account).ig_user_id
            else:
                kind, sender = sender_kind or "customer", conversation.customer_igsid
            if mid is None and status != "pending":
                mid = f"mid.{next(_seq)}"
            now = utcnow()
            message = Message(account_id=account, conversation_id=conversation.id, mid=mid,
                              direction="out" if out else "in", sender_kind=kind, sender_igsid=sender, text=text,
                              status=status if out else None, meta_timestamp=ts, created_at=now, updated_at=now)
            if out and status == "sent":
                message.sent_at = _at(ts)
            for key, value in columns.items():
                setattr(message, key, value)
            for position, spec in enumerate(attachments):
                values = {"type": spec} if isinstance(spec, str) else dict(spec)
                message.attachments.append(Attachment(account_id=account, position=position, created_at=now,
                                                      **values))
            db.session.add(message)
            self._touch(conversation, message)
            db.session.commit()
            db.session.refresh(message)
            _ = message.attachments, message.reactions  # loaded before it is detached
            db.session.expunge(message)  # with its attachments and reactions
            return message

    @staticmethod
    def _touch(conversation: Conversation, message: Message) -> None:
        """The list row follows the newest message by Meta's time; the window, the newest customer message."""
        at = _at(message.meta_timestamp)
        if conversation.last_message_at is None or at >= conversation.last_message_at:
            conversation.last_message_at = at
            conversation.last_message_preview = (message.text or "")[:255] or None
            conversation.last_message_direction = message.direction
            conversation.last_message_sender_kind = message.sender_kind
        if message.direction == "in" and (conversation.last_customer_message_at is None
                                          or at > conversation.last_customer_message_at):
            conversation.last_customer_message_at = at

    def identity(self, account, igsid: str, **columns: Any) -> Identity:
        """An identity row as written, even one the identities service would refuse (for the doctor)."""
        with self.app.app_context():
            now = utcnow()
            row = Identity(account_id=_id(account), igsid=igsid, created_at=now, updated_at=now, **columns)
            db.session.add(row)
            db.session.commit()
            return _detached(row)

    # --- The catalogue, posts and their links ----------------------------------------

    def product(self, account, name: str | None = None, sku: str | None = None, *, keywords: str | list[str] = "",
                price: str | Decimal | None = None, currency: str | None = None, active: bool = True) -> Product:
        """A product of account's catalogue (SKU made up unless given; keywords comma-separated)."""
        n = next(_seq)
        if not isinstance(keywords, str):
            keywords = ", ".join(keywords)
        if price is not None:
            price = Decimal(str(price)).quantize(Decimal("0.01"))
        with self.app.app_context():
            product = Product(account_id=_id(account), name=name or f"Product {n}", sku=sku or f"SKU-{n}",
                              keywords=keywords, price=price, currency=currency, active=active)
            db.session.add(product)
            db.session.commit()
            return _detached(product)

    def post(self, account, media_id: str | None = None, *, caption: str | None = None, is_own: bool = False,
             seen_via: str | None = None, **columns: Any) -> Post:
        """An Instagram post the inbox knows (a new media id unless given): the account's own or one shared."""
        with self.app.app_context():
            now = utcnow()
            post = Post(account_id=_id(account), media_id=media_id or str(18000000000000000 + next(_seq)),
                        caption=caption, is_own=is_own, seen_via=seen_via or ("own_media" if is_own else "share"),
                        first_seen_at=now, last_seen_at=now, **columns)
            db.session.add(post)
            db.session.commit()
            return _detached(post)

    def link(self, post, product, *, auto: bool = False, user=None, reason: str | None = None) -> PostProduct:
        """Link a post to a product: by hand (by user, if given) or automatically."""
        with self.app.app_context():
            post_row = db.session.get(Post, _id(post))
            link = PostProduct(account_id=post_row.account_id, post_id=post_row.id, product_id=_id(product),
                               auto_linked=auto, linked_by_user_id=_id(user), linked_reason=reason)
            db.session.add(link)
            db.session.commit()
            return _detached(link)
