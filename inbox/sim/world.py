"""The simulator's world: accounts, customers, conversations, messages, media, and its clock.

Plain state behind one re-entrant lock (`world.lock`): every reader and writer holds it,
and nobody holds it while doing network I/O. Instagram ids are strings, times are epoch
seconds on the simulator's clock (which tests can move forward), message timestamps ms.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

DAY = 24 * 3600
# A new account is subscribed to everything the inbox needs, in both flavours' spellings.
DEFAULT_FIELDS = ("messages", "message_echoes", "message_reactions", "messaging_postbacks", "messaging_seen",
                  "messaging_referral", "message_edit", "message_reads", "messaging_referrals", "comments",
                  "live_comments")


class SimClock:
    """Wall time plus an offset that tests move forward (token expiry, windows, CDN URLs)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0, days: float = 0) -> None:
        with self._lock:
            self._offset += seconds + minutes * 60 + hours * 3600 + days * DAY


def iso(epoch_seconds: float) -> str:
    """Meta's time format: 2026-01-01T10:00:00+0000."""
    return datetime.fromtimestamp(epoch_seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


@dataclass(eq=False)
class Account:
    """A professional account the simulated Meta knows, with its token and subscription."""

    ig_user_id: str
    username: str
    name: str
    page_id: str
    app_scoped_id: str  # what /me `id` returns under Instagram Login (not the webhook id)
    token: str
    token_expires_at: float | None
    token_created_at: float
    token_revoked: bool = False
    dm_access: bool = True  # False: the owner turned off API access to DMs (200/2534041)
    human_agent: bool = False  # the app holds the Human Agent feature (7-day window)
    subscribed_fields: set[str] = field(default_factory=set)
    old_tokens: set[str] = field(default_factory=set)


@dataclass(eq=False)
class Customer:
    """A person who writes to one account (an IGSID is per person and account)."""

    igsid: str
    account_id: str
    username: str
    name: str | None
    follower_count: int = 0
    follows_business: bool = True
    business_follows: bool = False
    is_verified: bool = False
    available: bool = True  # False: blocked the business or turned messages off (551)
    has_written: bool = False  # the profile API needs consent: a message or postback first
    last_customer_ts_ms: int | None = None  # opens the 24-hour window
    received: list[Received] = field(default_factory=list)
    actions: list[dict] = field(default_factory=list)  # sender actions the business sent


@dataclass(eq=False)
class Message:
    mid: str
    conversation_id: str
    sender_id: str
    recipient_id: str
    timestamp_ms: int
    origin: str  # customer, api (Send API), app (typed in the Instagram app)
    text: str | None = None
    attachments: list[dict] = field(default_factory=list)  # webhook form: {type, payload}
    asset_ids: list[str | None] = field(default_factory=list)  # the CDN asset behind each attachment
    reply_to: dict | None = None
    referral: dict | None = None
    quick_reply: dict | None = None
    is_unsupported: bool = False
    deleted: bool = False
    num_edit: int = 0
    reactions: dict[str, str] = field(default_factory=dict)  # user id -> reaction
    story: dict | None = None  # Conversations API form: {"mention": {...}} / {"reply_to": {...}}


@dataclass(eq=False)
class Conversation:
    id: str
    account_id: str
    customer_id: str
    messages: list[Message] = field(default_factory=list)  # oldest first
    business_replied: bool = False

    @property
    def updated_ms(self) -> int:
        return self.messages[-1].timestamp_ms if self.messages else 0

    def visible(self) -> list[Message]:
        """Messages the API lists, newest first (unsent ones are gone)."""
        return [m for m in reversed(self.messages) if not m.deleted]


@dataclass(eq=False)
class Media:
    id: str
    owner_id: str | None  # the account that owns it; None: someone else's post
    username: str
    caption: str | None
    media_type: str = "IMAGE"
    media_product_type: str = "FEED"
    permalink: str = ""
    timestamp: float = 0.0
    asset_id: str = ""
    copyrighted: bool = False


@dataclass(eq=False)
class Comment:
    """A comment on a media object: a customer's, or the business's own (`author_id` is the account)."""

    id: str
    media_id: str
    author_id: str
    username: str
    text: str
    timestamp: float  # seconds on the simulator's clock
    parent_id: str | None = None
    own: bool = False
    live: bool = False
    hidden: bool = False
    deleted: bool = False
    private_reply_mid: str | None = None  # one private reply per comment


@dataclass(frozen=True)
class Received:
    """What reached a customer from the business: the inbox's sends and the owner's app messages."""

    mid: str
    origin: str  # api or app
    text: str | None
    attachments: tuple
    at_ms: int
    comment_id: str | None = None  # a private reply: the comment it answers


class World:
    """Every object of the simulated Meta, by id."""

    def __init__(self, clock: SimClock, seed: int | None = None) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.accounts: dict[str, Account] = {}
        self.tokens: dict[str, str] = {}  # token -> ig_user_id
        self.customers: dict[str, Customer] = {}
        self.conversations: dict[str, Conversation] = {}
        self.conversation_of: dict[tuple[str, str], str] = {}
        self.messages: dict[str, Message] = {}
        self.media: dict[str, Media] = {}
        self.comments: dict[str, Comment] = {}
        self._seq = itertools.count(1)

    # --- ids --------------------------------------------------------------------

    def _n(self) -> int:
        return next(self._seq)

    def new_numeric_id(self, prefix: str, digits: int = 17) -> str:
        with self.lock:
            n = self._n()
            tail = f"{n:06d}{self.rng.randrange(10 ** 6):06d}"
            return (prefix + tail.rjust(digits - len(prefix), "0"))[:digits]

    def new_mid(self) -> str:
        with self.lock:
            raw = f"ig_message_item:1:{self._n()}:{self.rng.getrandbits(64):016x}".encode()
        return "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOj" + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def new_token(self, prefix: str = "IGAA") -> str:
        with self.lock:
            return prefix + "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
                                    for _ in range(48))

    def fbtrace_id(self) -> str:
        with self.lock:
            return "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
                           for _ in range(11))

    # --- accounts, customers, media ------------------------------------------------

    def add_account(self, *, username: str, name: str | None = None, ig_user_id: str | None = None,
                    token: str | None = None, token_ttl: float | None = 60 * DAY, page_id: str | None = None,
                    subscribed_fields=DEFAULT_FIELDS) -> Account:
        with self.lock:
            now = self.clock.now()
            account = Account(
                ig_user_id=ig_user_id or self.new_numeric_id("1784140"),
                username=username,
                name=name or username.replace("_", " ").title(),
                page_id=page_id or self.new_numeric_id("10", 15),
                app_scoped_id=self.new_numeric_id("2", 16),
                token=token or self.new_token(),
                token_expires_at=now + token_ttl if token_ttl else None,
                token_created_at=now,
                subscribed_fields=set(subscribed_fields),
            )
            if account.ig_user_id in self.accounts:
                raise ValueError(f"Account {account.ig_user_id} exists.")
            self.accounts[account.ig_user_id] = account
            self.tokens[account.token] = account.ig_user_id
            return account

    def add_customer(self, account: Account, *, username: str, name: str | None = None, igsid: str | None = None,
                     **flags) -> Customer:
        with self.lock:
            customer = Customer(igsid=igsid or self.new_numeric_id("7", 16), account_id=account.ig_user_id,
                                username=username, name=name, **flags)
            if customer.igsid in self.customers:
                raise ValueError(f"Customer {customer.igsid} exists.")
            self.customers[customer.igsid] = customer
            return customer

    def add_media(self, *, owner: Account | None, username: str | None = None, caption: str | None = None,
                  media_type: str = "IMAGE", media_product_type: str = "FEED", asset_id: str = "",
                  at: float | None = None) -> Media:
        with self.lock:
            media_id = self.new_numeric_id("179", 17)
            shortcode = base64.urlsafe_b64encode(media_id.encode()).decode()[:11]
            kind = "reel" if media_product_type == "REELS" else "p"
            media = Media(id=media_id, owner_id=owner.ig_user_id if owner else None,
                          username=username or (owner.username if owner else "someone_else"), caption=caption,
                          media_type=media_type, media_product_type=media_product_type,
                          permalink=f"https://www.instagram.com/{kind}/{shortcode}/",
                          timestamp=at if at is not None else self.clock.now(), asset_id=asset_id)
            self.media[media_id] = media
            return media

    def add_comment(self, media: Media, *, author_id: str, username: str, text: str, parent_id: str | None = None,
                    own: bool = False, live: bool = False, at: float | None = None) -> Comment:
        with self.lock:
            comment = Comment(id=self.new_numeric_id("178", 17), media_id=media.id, author_id=author_id,
                              username=username, text=text, parent_id=parent_id, own=own, live=live,
                              timestamp=at if at is not None else self.clock.now())
            self.comments[comment.id] = comment
            return comment

    def account_for_token(self, token: str) -> Account | None:
        with self.lock:
            ig_user_id = self.tokens.get(token)
            return self.accounts.get(ig_user_id) if ig_user_id else None

    def account_by_any_id(self, object_id: str) -> Account | None:
        """An account named by its IG id, Page id or app-scoped id."""
        with self.lock:
            if object_id in self.accounts:
                return self.accounts[object_id]
            for account in self.accounts.values():
                if object_id in (account.page_id, account.app_scoped_id):
                    return account
            return None

    # --- conversations and messages ------------------------------------------------

    def conversation(self, account: Account, customer: Customer) -> Conversation:
        with self.lock:
            key = (account.ig_user_id, customer.igsid)
            conversation_id = self.conversation_of.get(key)
            if conversation_id is None:
                raw = f"ig_conversation:{account.ig_user_id}:{customer.igsid}".encode()
                encoded = base64.urlsafe_b64encode(raw).decode().rstrip("=")
                conversation_id = "aWdfZAG06MTpJR01lc3NhZA2VUaHJlYWQ6" + encoded
                self.conversations[conversation_id] = Conversation(conversation_id, account.ig_user_id, customer.igsid)
                self.conversation_of[key] = conversation_id
            return self.conversations[conversation_id]

    def add_message(self, conversation: Conversation, *, sender_id: str, recipient_id: str, origin: str,
                    timestamp_ms: int | None = None, mid: str | None = None, **fields) -> Message:
        with self.lock:
            message = Message(mid=mid or self.new_mid(), conversation_id=conversation.id, sender_id=sender_id,
                              recipient_id=recipient_id, timestamp_ms=timestamp_ms or self.clock.now_ms(),
                              origin=origin, **fields)
            self.messages[message.mid] = message
            # Seeded history may come out of order; the thread is ordered by time.
            bisect.insort_right(conversation.messages, message, key=lambda m: m.timestamp_ms)
            return message

    def detail_allowed(self, message: Message) -> bool:
        """Meta returns details only for the 20 most recent messages of a thread."""
        with self.lock:
            conversation = self.conversations[message.conversation_id]
            return message in conversation.visible()[:20]
