"""What staff read in the inbox: the conversation list, one thread, read state and done/open.

`touch` is the one rule for the list row after a message (time, preview, unread, reopen):
every writer of messages calls it (ingestion, resync, replies, uploads).

The list is keyset-paginated on (last_message_at, id), newest first; conversations that
have no message time yet come last, by id. Search matches the customer's @username and
name, and the text of the conversation's messages (pg_trgm on PostgreSQL, an FTS5
trigram table on SQLite; migration 0002_search), a phrase first through its adjacent word
pairs on PostgreSQL (migration 0009_pipeline2). Render helpers (quoted messages, shared
posts' products) cache their lookups per request in flask.g.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from flask import current_app, g, has_app_context
from sqlalchemy import BigInteger, Text, and_, column, func, or_, select, text, tuple_, union, update
from sqlalchemy.dialects import postgresql
from sqlalchemy import true as sa_true
from sqlalchemy.orm import aliased, selectinload

from ..extensions import db
from ..live.publish import publish_after_commit
from . import activity
from ..models import (Attachment, Conversation, ConversationFact, ConversationLabel, Identity, Label, Message,
                      NoteMention, Post, PostProduct, Product, StaffUser, ms_to_datetime, utcnow)
from ..models.types import MAX_ID

PAGE_SIZE = 30
THREAD_PAGE_SIZE = 100
VIEWS = ("all", "unread", "no_product", "mentions")
STATUSES = ("", "open", "done")
# Message text needs three characters to match (trigram indexes); names match from one.
MIN_TEXT_SEARCH = 3
# PostgreSQL: text search first checks this many conversations in list order, one short probe
# each (setting SEARCH_WALK_WINDOW); a text too rare to fill a page there goes to the trigram index.
WALK_WINDOW = 400
# PostgreSQL: up to this many people matching a name (SEARCH_NAME_SET_MAX) are looked up
# directly; more are walked like a common text.
NAME_SET_MAX = 2000
# A rare text's conversations up to this many are fetched and passed as a list.
TEXT_SET_MAX = 5000
POST_TYPES = ("ig_post", "share", "ig_reel", "reel")
PREVIEW_LENGTH = 255
ATTACHMENT_PREVIEWS = {
    "image": "Photo", "video": "Video", "audio": "Voice message", "file": "File", "ig_post": "Shared a post",
    "share": "Shared a post", "ig_reel": "Shared a reel", "reel": "Shared a reel",
    "story_mention": "Mentioned you in their story", "ig_story": "Shared a story",
    "ephemeral": "Sent a disappearing photo", "fallback": "Shared a link", "template": "Shared a product",
    "sticker": "Sticker", "unknown": "Attachment",
}


class NotFound(LookupError):
    """No such conversation in this account (the route answers 404)."""


@dataclass(frozen=True)
class Filters:
    """What the list shows: a view, a product, a status, a search text, whose it is, a label, and the post or ad that
    started it (`post`, `ad`: the Insights page links here).

    `assignee`: "" (everyone's), "me", "none" (unassigned) or a staff member's id; "me" and the
    "mentions" view need `user_id` (the person looking; not part of the query string).
    """

    view: str = "all"
    product_id: int | None = None
    status: str = ""
    q: str = ""
    assignee: str = ""
    label_id: int | None = None
    user_id: int | None = None
    # Conversations a post (shared, or commented on) or an ad started: the Insights page links here.
    post: str = ""
    ad: str = ""

    @classmethod
    def from_args(cls, args: Any, user_id: int | None = None) -> Filters:
        """Read the list's query string; anything odd falls back to the default."""
        view = args.get("view", "all")
        status = args.get("status", "")
        product_id = _int_arg(args.get("product"))
        label_id = _int_arg(args.get("label"))
        assignee = str(args.get("assignee", "") or "")
        if assignee not in ("", "me", "none") and not (assignee.isdigit() and len(assignee) < 12):
            assignee = ""
        q = " ".join(str(args.get("q", "")).split())[:100]
        post, ad = (str(args.get(k, "")).strip()[:64] for k in ("post", "ad"))
        return cls(view=view if view in VIEWS else "all", product_id=product_id,
                   status=status if status in STATUSES else "", q=q, assignee=assignee, label_id=label_id,
                   user_id=user_id, post=post, ad=ad)

    def args(self) -> dict[str, Any]:
        """The query string that gives these filters back (defaults left out)."""
        out: dict[str, Any] = {}
        if self.view != "all":
            out["view"] = self.view
        if self.product_id:
            out["product"] = self.product_id
        if self.status:
            out["status"] = self.status
        if self.q:
            out["q"] = self.q
        if self.assignee:
            out["assignee"] = self.assignee
        if self.label_id:
            out["label"] = self.label_id
        if self.post:
            out["post"] = self.post
        if self.ad:
            out["ad"] = self.ad
        return out

    @property
    def is_default(self) -> bool:
        return not self.args()

    @property
    def assignee_id(self) -> int | None:
        """The staff member the list is narrowed to ("me" is the person looking)."""
        if self.assignee == "me":
            return self.user_id
        return int(self.assignee) if self.assignee.isdigit() else None


def _int_arg(value: Any) -> int | None:
    """An id from the query string; anything else (or one too big for a column) is no filter."""
    try:
        number = int(value or 0) or None
    except (TypeError, ValueError):
        return None
    return number if number is not None and 0 < number <= MAX_ID else None


@dataclass
class ConversationRow:
    """One list row: the conversation with the customer's identity and the product."""

    conversation: Conversation
    identity: Identity | None
    product: Product | None


@dataclass
class ConversationPage:
    rows: list[ConversationRow]
    next_cursor: str | None
    filters: Filters = field(default_factory=Filters)


@dataclass
class Thread:
    conversation: Conversation
    identity: Identity | None
    product: Product | None
    messages: list[Message]
    # The cursor of the oldest message shown when there are earlier ones.
    earlier_cursor: str | None
    # The activity lines and notes in the same stretch of time (services.activity.TimelineEvent).
    events: list = field(default_factory=list)

    @property
    def timeline(self) -> list[tuple[str, Any]]:
        """Messages and activity in time order: ("message", Message) or ("event", TimelineEvent)."""
        return activity.merge_timeline(self.messages, self.events)


# --- Cursors --------------------------------------------------------------------------

_CURSOR = re.compile(r"^(-|\d{1,20})\.(\d{1,20})$")


def encode_cursor(at: datetime | None, ident: int) -> str:
    """A list position: microseconds since the epoch (or "-" for no time) and the id."""
    if at is None:
        return f"-.{ident}"
    micros = int(at.timestamp()) * 1_000_000 + at.microsecond
    return f"{micros}.{ident}"


def decode_cursor(cursor: str | None) -> tuple[datetime | None, int] | None:
    """The position a cursor names, or None for a missing or malformed one (the first page)."""
    match = _CURSOR.match(cursor or "")
    if not match:
        return None
    stamp, ident = match.groups()
    if int(ident) > MAX_ID:
        return None
    if stamp == "-":
        return None, int(ident)
    micros = int(stamp)
    try:
        at = datetime.fromtimestamp(micros // 1_000_000, tz=timezone.utc).replace(microsecond=micros % 1_000_000)
    except (OverflowError, ValueError, OSError):  # no such time: the first page
        return None
    return at, int(ident)


# --- The list -------------------------------------------------------------------------

def list_conversations(account_id: int, filters: Filters | None = None, cursor: str | None = None,
                       limit: int = PAGE_SIZE) -> ConversationPage:
    """One page of the account's conversations, newest activity first, after `cursor`."""
    filters = filters or Filters()
    position = decode_cursor(cursor)
    C = Conversation
    conditions = [C.account_id == account_id, *_filter_conditions(account_id, filters)]
    search = _search(account_id, filters.q) if filters.q else None
    rows: list[ConversationRow] = []
    # Conversations with a time, by (time, id) descending; then those without one, by id.
    if position is None or position[0] is not None:
        timed = [C.last_message_at.is_not(None)]
        if position is not None:
            timed.append(tuple_(C.last_message_at, C.id) < tuple_(position[0], position[1]))
        rows = _rows(and_(*conditions, *timed), (C.last_message_at.desc(), C.id.desc()), limit + 1, search)
    if len(rows) <= limit:
        untimed = [C.last_message_at.is_(None)]
        if position is not None and position[0] is None:
            untimed.append(C.id < position[1])
        rows += _rows(and_(*conditions, *untimed), (C.id.desc(),), limit + 1 - len(rows), search)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1].conversation
        next_cursor = encode_cursor(last.last_message_at, last.id)
    return ConversationPage(rows=rows, next_cursor=next_cursor, filters=filters)


def _rows(where, order, limit: int, search: _Search | None = None) -> list[ConversationRow]:
    if limit <= 0:
        return []
    C = Conversation
    if search is not None and search.postgres:
        # PostgreSQL: the best `limit` name matches and the best `limit` text matches, each found
        # its own fast way, then merged in list order by the query below.
        ids = set(_top_ids(where, order, limit, search, "names"))
        if search.text_pattern is not None:
            ids |= set(_top_ids(where, order, limit, search, "text"))
        if not ids:
            return []
        where = C.id.in_(sorted(ids))
    elif search is not None:
        where = and_(where, search.condition)
    query = (select(C, Identity, Product)
             .outerjoin(Identity, and_(Identity.account_id == C.account_id, Identity.igsid == C.customer_igsid))
             .outerjoin(Product, Product.id == C.product_id)
             .where(where).order_by(*order).limit(limit))
    rows = [ConversationRow(c, i, p) for c, i, p in db.session.execute(query).all()]
    _load_team(rows)
    return rows


def _load_team(rows: list[ConversationRow]) -> None:
    """What the rows show of the team (assignee, labels), in two queries, kept for the templates (row_team)."""
    if not rows or not has_app_context():
        return
    cache = _cache()["team"]
    account_id = rows[0].conversation.account_id
    ids = {row.conversation.id for row in rows}
    user_ids = {row.conversation.assignee_user_id for row in rows} - {None}
    users = {u.id: u for u in db.session.scalars(select(StaffUser).where(StaffUser.id.in_(user_ids)))} if user_ids else {}
    found: dict[int, list[Label]] = {cid: [] for cid in ids}
    for conversation_id, label in db.session.execute(
            select(ConversationLabel.conversation_id, Label).join(Label, Label.id == ConversationLabel.label_id)
            .where(ConversationLabel.account_id == account_id, ConversationLabel.conversation_id.in_(sorted(ids)))
            .order_by(Label.name)).all():
        found[conversation_id].append(label)
    for row in rows:
        c = row.conversation
        cache[c.id] = (users.get(c.assignee_user_id) if c.assignee_user_id else None, found[c.id])


def row_team(conversation: Conversation) -> tuple[StaffUser | None, list[Label]]:
    """A conversation's assignee and labels (loaded with its row, else now)."""
    cache = _cache()["team"]
    if conversation.id not in cache:
        _load_team([ConversationRow(conversation, None, None)])
    return cache.get(conversation.id, (None, []))


def _top_ids(where, order, limit: int, search: _Search, kind: str) -> list[int]:
    """The first `limit` conversations in list order whose names (or message text) match.

    First a walk: the next conversations in list order are checked one by one (a hashed
    name set, or a LIMIT 1 probe of the thread index for the text), which is fast for
    anything common. A window of SEARCH_WALK_WINDOW conversations (ten times that for
    names, whose check is cheap) bounds it; when the window neither fills the page nor
    reaches the end of the list, the match is rare and its index finds the few rows.
    """
    C = Conversation
    if kind == "names":
        igsids = search.name_matches()
        if len(igsids) <= current_app.config.get("SEARCH_NAME_SET_MAX", NAME_SET_MAX):
            # Few people match: look them up directly (the (account, customer) index) and sort.
            if not igsids:
                return []
            return list(db.session.scalars(select(C.id).where(where, C.customer_igsid.in_(igsids))
                                           .order_by(*order).limit(limit)))
    found = None
    if kind == "text" and search.phrase:
        # A phrase: its word pairs find its few messages at once (a phrase of common words is
        # rare far more often than not, and the walk would probe the whole window in vain).
        found = _text_set(search)
        if len(found) <= TEXT_SET_MAX:
            return _in_list_order(where, order, limit, found)
    window_size = current_app.config.get("SEARCH_WALK_WINDOW", WALK_WINDOW) * (10 if kind == "names" else 1)
    window = select(C.id, C.customer_igsid, C.last_message_at).where(where).order_by(*order).limit(window_size)
    window = window.subquery("window")
    query = select(window.c.id).select_from(window)
    if kind == "names":
        query = query.where(window.c.customer_igsid.in_(search.names))
    else:
        hit = (select(Message.id.label("hit"))
               .where(Message.conversation_id == window.c.id, Message.text.ilike(search.text_pattern, escape="\\"))
               .limit(1).lateral("text_hit"))
        query = query.join(hit, sa_true())
    w_order = [getattr(window.c, clause.element.key).desc() for clause in order]
    ids = list(db.session.scalars(query.order_by(*w_order).limit(limit)))
    if len(ids) >= limit or db.session.scalar(select(func.count()).select_from(window)) < window_size:
        return ids
    if kind == "names":
        return list(db.session.scalars(select(C.id).where(where, C.customer_igsid.in_(search.names))
                                       .order_by(*order).limit(limit)))
    # A rare text: its conversations through the trigram index, then those in list order.
    return _in_list_order(where, order, limit, _text_set(search) if found is None else found, search)


def _text_set(search: _Search) -> list[int]:
    """Up to TEXT_SET_MAX + 1 conversation ids (with repeats) of messages matching the search text."""
    return list(db.session.scalars(select(search.text_ids.subquery().c[0]).limit(TEXT_SET_MAX + 1)))


def _in_list_order(where, order, limit: int, found: list[int], search: _Search | None = None) -> list[int]:
    """The first `limit` in list order of the conversations found (all matches of `search` when too many)."""
    C = Conversation
    if not found:
        return []
    rare = C.id.in_(sorted(set(found))) if len(found) <= TEXT_SET_MAX else C.id.in_(search.text_ids)
    return list(db.session.scalars(select(C.id).where(where, rare).order_by(*order).limit(limit)))


def _filter_conditions(account_id: int, filters: Filters) -> list:
    C = Conversation
    out = []
    if filters.view == "unread":
        out.append(C.unread_count > 0)
    elif filters.view == "no_product":
        out.append(C.product_id.is_(None))
    if filters.product_id:
        out.append(C.product_id == filters.product_id)
    if filters.status:
        out.append(C.status == filters.status)
    if filters.view == "mentions":
        out.append(C.id.in_(select(NoteMention.conversation_id).where(
            NoteMention.account_id == account_id, NoteMention.user_id == (filters.user_id or 0))))
    if filters.assignee == "none":
        out.append(C.assignee_user_id.is_(None))
    elif filters.assignee:
        out.append(C.assignee_user_id == (filters.assignee_id or 0))
    if filters.label_id:
        out.append(C.id.in_(select(ConversationLabel.conversation_id).where(
            ConversationLabel.account_id == account_id, ConversationLabel.label_id == filters.label_id)))
    F = ConversationFact
    if filters.post:
        out.append(C.id.in_(select(F.conversation_id).where(F.account_id == account_id,
                                                            F.post_media_id == filters.post,
                                                            F.source.in_(("post", "comment")))))
    if filters.ad:
        out.append(C.id.in_(select(F.conversation_id).where(F.account_id == account_id, F.ad_id == filters.ad,
                                                            F.source == "ad")))
    return out


def _like_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass
class _Search:
    condition: Any  # conversations whose name or message text matches (one IN over a set of ids)
    names: Any  # igsids whose @username or name matches (a subquery)
    text_ids: Any = None  # ids of conversations with a matching message (a subquery), None: names only
    text_pattern: str | None = None  # the ILIKE pattern of the text, for the walk in list order
    postgres: bool = False
    phrase: bool = False  # text_ids go through the word pairs of a phrase (PostgreSQL)
    _names: list[str] | None = None

    def name_matches(self) -> list[str]:
        """Up to NAME_SET_MAX + 1 matching igsids (more means: a common name)."""
        if self._names is None:
            cap = current_app.config.get("SEARCH_NAME_SET_MAX", NAME_SET_MAX)
            self._names = list(db.session.scalars(self.names.limit(cap + 1)))
        return self._names


def _search(account_id: int, q: str) -> _Search:
    """Conversations whose customer's @username or name, or any message text, contains q.

    The condition is `id IN (one set of ids)`, so the database starts from the (few) matches
    and sorts them, rather than reading the whole list in order and testing each row.
    PostgreSQL uses _top_ids instead, which also handles common names and words fast.
    """
    C = Conversation
    named = aliased(Conversation)
    name_q = q.lstrip("@") or q
    pattern = _like_pattern(name_q)
    by_name = select(Identity.igsid).where(
        Identity.account_id == account_id,
        or_(Identity.username.ilike(pattern, escape="\\"), Identity.name.ilike(pattern, escape="\\")))
    named_ids = select(named.id).where(named.account_id == account_id, named.customer_igsid.in_(by_name))
    postgres = db.session.get_bind().dialect.name == "postgresql"
    if len(q) < MIN_TEXT_SEARCH or (q.startswith("@") and " " not in q):
        # "@ama" asks for a username.
        return _Search(C.id.in_(named_ids), by_name, postgres=postgres)
    text_ids = _text_matches(account_id, q)
    return _Search(C.id.in_(union(named_ids, text_ids)), by_name, text_ids, _like_pattern(q), postgres,
                   phrase=postgres and bool(word_pairs(q)))


def _text_matches(account_id: int, q: str):
    """Ids of the account's conversations with a message whose text contains q."""
    if db.session.get_bind().dialect.name == "sqlite":
        # FTS5 trigram: a quoted string matches as a substring, case-insensitively.
        phrase = '"' + q.replace('"', '""') + '"'
        fts = text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH :fts_q").bindparams(fts_q=phrase)
        return select(Message.conversation_id).where(
            Message.account_id == account_id, Message.id.in_(fts.columns(column("rowid", BigInteger))))
    pairs = word_pairs(q)
    if pairs:
        # A phrase: the messages holding its word pairs (ix_messages_word_pairs, migration
        # pipeline2), few even when its words are common, then the phrase itself checked on
        # them. `text || ''` keeps the planner off the trigram index, whose long posting
        # lists of common words are what made such phrases slow.
        return select(Message.conversation_id).where(
            Message.account_id == account_id,
            func.message_word_pairs(Message.text).op("@>")(postgresql.array(pairs, type_=Text)),
            (Message.text + "").ilike(_like_pattern(q), escape="\\"))
    return select(Message.conversation_id).where(
        Message.account_id == account_id, Message.text.ilike(_like_pattern(q), escape="\\"))


def word_pairs(q: str) -> list:
    """The word pairs (ix_messages_word_pairs) every text containing q holds; [] for one word.

    Each pair of adjacent words of q as the last two characters of the first and the first
    two of the second, lowercased by the database as the index is. The first word of q may
    be the end of a longer word, and the last the start of one, so a one-character word at
    either end says nothing about its neighbour's pair and is left out.
    """
    words = q.split(" ")
    if len(words) < 2 or "" in words or any(ch.isspace() for ch in q.replace(" ", "")):
        return []
    pairs = []
    for i, (left, right) in enumerate(zip(words, words[1:])):
        if (i == 0 and len(left) < 2) or (i + 1 == len(words) - 1 and len(right) < 2):
            continue
        pairs.append(func.right(func.lower(left), 2, type_=Text).concat(" ")
                     .concat(func.left(func.lower(right), 2, type_=Text)))
    return pairs


def conversation_row(account_id: int, conversation_id: int) -> ConversationRow:
    """One list row by id (for responses); NotFound outside the account."""
    rows = _rows(and_(Conversation.account_id == account_id, Conversation.id == conversation_id),
                 (Conversation.id,), 1)
    if not rows:
        raise NotFound(conversation_id)
    return rows[0]


def conversation_rows(account_id: int, conversation_ids: set[int]) -> dict[int, ConversationRow]:
    """List rows by id, in one query (a batch of live updates); other accounts' ids are left out."""
    if not conversation_ids:
        return {}
    rows = _rows(and_(Conversation.account_id == account_id, Conversation.id.in_(sorted(conversation_ids))),
                 (Conversation.id,), len(conversation_ids))
    return {row.conversation.id: row for row in rows}


def account_products(account_id: int, selected: int | None = None) -> list[Product]:
    """The products the list can filter by: the active ones, and the one selected."""
    condition = Product.active.is_(True)
    if selected:
        condition = or_(condition, Product.id == selected)
    return list(db.session.scalars(
        select(Product).where(Product.account_id == account_id, condition).order_by(Product.name, Product.id)))


UNREAD_TOTAL_CAP = 1000


def unread_total(account_id: int) -> int:
    """Conversations with unread messages (the page title shows it), counted up to UNREAD_TOTAL_CAP."""
    waiting = (select(Conversation.id).where(Conversation.account_id == account_id, Conversation.unread_count > 0)
               .limit(UNREAD_TOTAL_CAP))
    return db.session.scalar(select(func.count()).select_from(waiting.subquery())) or 0


# --- The thread -----------------------------------------------------------------------

def get_conversation(account_id: int, conversation_id: int) -> Conversation:
    conversation = db.session.scalar(select(Conversation).where(
        Conversation.account_id == account_id, Conversation.id == conversation_id))
    if conversation is None:
        raise NotFound(conversation_id)
    return conversation


def thread(account_id: int, conversation_id: int, before: str | None = None,
           limit: int = THREAD_PAGE_SIZE) -> Thread:
    """The newest messages of a conversation (or those before `before`), oldest first."""
    row = conversation_row(account_id, conversation_id)
    position = _decode_message_cursor(before)
    query = (select(Message)
             .where(Message.conversation_id == conversation_id, Message.account_id == account_id)
             .options(selectinload(Message.attachments), selectinload(Message.reactions))
             .order_by(Message.meta_timestamp.desc(), Message.id.desc())
             .limit(limit + 1))
    if position is not None:
        query = query.where(tuple_(Message.meta_timestamp, Message.id) < tuple_(*position))
    newest_first = list(db.session.scalars(query))
    earlier = None
    if len(newest_first) > limit:
        newest_first = newest_first[:limit]
        oldest = newest_first[-1]
        earlier = f"{oldest.meta_timestamp}.{oldest.id}"
    messages = list(reversed(newest_first))
    prepare_messages(account_id, messages)
    since = ms_to_datetime(messages[0].meta_timestamp) if earlier and messages else None
    until = ms_to_datetime(position[0]) if position is not None else None
    events = activity.thread_events(account_id, conversation_id, since=since, until=until)
    return Thread(conversation=row.conversation, identity=row.identity, product=row.product,
                  messages=messages, earlier_cursor=earlier, events=events)


def _decode_message_cursor(cursor: str | None) -> tuple[int, int] | None:
    match = re.match(r"^(\d{1,20})\.(\d{1,20})$", cursor or "")
    if not match or max(int(match.group(1)), int(match.group(2))) > MAX_ID:
        return None
    return int(match.group(1)), int(match.group(2))


def get_messages(account_id: int, message_ids: set[int]) -> dict[int, Message]:
    """Messages by id with what their bubbles show, in a few queries (a batch of live updates);
    other accounts' ids are left out."""
    if not message_ids:
        return {}
    messages = list(db.session.scalars(
        select(Message).where(Message.account_id == account_id, Message.id.in_(sorted(message_ids)))
        .options(selectinload(Message.attachments), selectinload(Message.reactions))))
    prepare_messages(account_id, messages)
    return {message.id: message for message in messages}


def prepare_messages(account_id: int, messages: list[Message]) -> None:
    """Load, in two queries, what the bubbles refer to: quoted messages and shared posts' products."""
    cache = _cache()
    mids = {m.reply_to_mid for m in messages if m.reply_to_mid} - set(cache["quoted"])
    if mids:
        found = {m.mid: m for m in db.session.scalars(
            select(Message).where(Message.account_id == account_id, Message.mid.in_(mids))
            .options(selectinload(Message.attachments)))}
        for mid in mids:
            cache["quoted"][mid] = found.get(mid)
    media_ids = {a.media_id for m in messages for a in m.attachments
                 if a.media_id and a.type in POST_TYPES} - set(cache["posts"])
    if media_ids:
        _load_posts(account_id, media_ids, cache)


def _load_posts(account_id: int, media_ids: set[str], cache: dict) -> None:
    rows = db.session.execute(
        select(Post, Product).outerjoin(PostProduct, PostProduct.post_id == Post.id)
        .outerjoin(Product, Product.id == PostProduct.product_id)
        .where(Post.account_id == account_id, Post.media_id.in_(media_ids))).all()
    found = {post.media_id: (post, product) for post, product in rows}
    for media_id in media_ids:
        cache["posts"][media_id] = found.get(media_id, (None, None))


def quoted_message(message: Message) -> Message | None:
    """The message a reply quotes, when we hold it."""
    if not message.reply_to_mid:
        return None
    cache = _cache()
    if message.reply_to_mid not in cache["quoted"]:
        prepare_messages(message.account_id, [message])
    return cache["quoted"].get(message.reply_to_mid)


def attachment_post(attachment: Attachment) -> tuple[Post | None, Product | None]:
    """The Post a shared post/reel refers to and the product it is linked to (either may be None)."""
    if not attachment.media_id or attachment.type not in POST_TYPES:
        return None, None
    cache = _cache()
    if attachment.media_id not in cache["posts"]:
        _load_posts(attachment.account_id, {attachment.media_id}, cache)
    return cache["posts"].get(attachment.media_id, (None, None))


def _cache() -> dict:
    """Lookups made while rendering one request (templates ask; queries run once)."""
    if not has_app_context():
        return {"quoted": {}, "posts": {}, "team": {}}
    if "inbox_cache" not in g:
        g.inbox_cache = {"quoted": {}, "posts": {}, "team": {}}
    return g.inbox_cache


# --- Read state and status ------------------------------------------------------------

def mark_read(account_id: int, conversation_id: int) -> bool:
    """Clear the unread count (opening a thread); True if it changed. Other tabs hear of it."""
    changed = db.session.execute(
        update(Conversation)
        .where(Conversation.account_id == account_id, Conversation.id == conversation_id,
               Conversation.unread_count > 0)
        .values(unread_count=0, updated_at=utcnow())
        .execution_options(synchronize_session="fetch")).rowcount
    if changed:
        if db.session.get_bind().dialect.name == "postgresql":
            # Read state is cheap to lose in a database crash; opening a thread need not wait for a disk flush.
            db.session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        publish_after_commit(account_id, "conversation.updated", conversation_id=conversation_id)
    db.session.commit()
    return bool(changed)


def set_status(account_id: int, conversation_id: int, status: str, *, actor_id: int | None = None) -> Conversation:
    """Mark a conversation done or open again (an activity line); a new customer message reopens it (ingestion)."""
    if status not in ("open", "done"):
        raise ValueError(f"unknown status {status!r}")
    conversation = get_conversation(account_id, conversation_id)
    if conversation.status != status:
        conversation.status = status
        activity.record_event(account_id, conversation_id, "done" if status == "done" else "reopened",
                              actor_user_id=actor_id)
        publish_after_commit(account_id, "conversation.updated", conversation_id=conversation_id)
    db.session.commit()
    return conversation



# --- The list row after a message -----------------------------------------------------------

def preview_text(text: str | None, attachment_types: list[str] | tuple[str, ...] = (), *,
                 is_deleted: bool = False, is_unsupported: bool = False) -> str:
    """The one-line preview of a message shown in the conversation list."""
    if is_deleted:
        return "Unsent a message"
    if text and text.strip():
        line = " ".join(text.split())
        return line if len(line) <= PREVIEW_LENGTH else line[: PREVIEW_LENGTH - 1] + "…"
    if attachment_types:
        return ATTACHMENT_PREVIEWS.get(attachment_types[0], "Attachment")
    if is_unsupported:
        return "Unsupported message"
    return "Message"


def message_preview(message: Message) -> str:
    """preview_text of a stored message (its attachments loaded)."""
    types = [a.type for a in message.attachments] if not message.is_deleted else []
    return preview_text(message.text, types, is_deleted=message.is_deleted, is_unsupported=message.is_unsupported)


def touch(conversation: Any, message: Any, *, preview: str, new: bool = True, history: bool = False) -> None:
    """Keep the list row right after a message was written or changed (in the caller's transaction).

    The newest message by Meta's time gives the row its time, preview and direction. A new
    customer message moves the customer's reply window, counts as unread (unless it is
    already unsent) and reopens a conversation marked done; a new outgoing one at or after
    the customer's latest means nothing is waiting any more. With new=False (a message we
    hold was claimed, confirmed, edited, unsent or merged) only the preview follows. With
    history=True (resync found a message older than the list showed) the customer's window
    moves, but nothing is unread or reopened.

    `conversation` and `message` are rows or plain objects with the same attributes (the
    set-based writers keep plain ones and write them back together); the caller holds the
    conversation's row lock.
    """
    at = ms_to_datetime(message.meta_timestamp)
    if conversation.last_message_at is None or at >= conversation.last_message_at:
        conversation.last_message_at = at
        conversation.last_message_preview = preview
        conversation.last_message_direction = message.direction
        conversation.last_message_sender_kind = message.sender_kind
    if not new:
        return
    if message.direction == "in":
        if conversation.last_customer_message_at is None or at > conversation.last_customer_message_at:
            conversation.last_customer_message_at = at
        if not message.is_deleted and not history:
            conversation.unread_count = (conversation.unread_count or 0) + 1
            if conversation.status == "done":
                conversation.status = "open"  # the customer wrote again
    elif not history and (conversation.last_customer_message_at is None
                          or at >= conversation.last_customer_message_at):
        # The owner answered (here or in the app): nothing before it is waiting any more.
        conversation.unread_count = 0


def lock_conversation(conversation_id: int) -> Conversation:
    """The conversation row, locked for this transaction and fresh from the database."""
    return db.session.scalars(select(Conversation).where(Conversation.id == conversation_id)
                              .with_for_update().execution_options(populate_existing=True)).one()


def lock_customer_conversation(account_id: int, customer_igsid: str) -> Conversation | None:
    """The account's conversation with this customer, locked for this transaction; None when there is none."""
    return db.session.scalars(select(Conversation)
                              .where(Conversation.account_id == account_id,
                                     Conversation.customer_igsid == customer_igsid)
                              .with_for_update().execution_options(populate_existing=True)).first()
