"""The Graph API routes: what graph.instagram.com / graph.facebook.com answer.

https://developers.facebook.com/docs/instagram-platform

Every route runs through `_run`, which authenticates the token, applies injected
failures and per-account rate limits, renders Meta's error body on failure, adds the
configured latency (sleeping in the request's own thread) and logs the call.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, redirect, request

from . import events
from .fields import FieldSpec, FieldSyntaxError, parse, unparse
from .world import Account, Conversation, Media, Message, iso

bp = Blueprint("graph", __name__)

KNOWN_FIELDS = {
    "messages", "message_echoes", "message_reactions", "messaging_postbacks", "messaging_seen",
    "messaging_referral", "messaging_optins", "messaging_handover", "standby", "message_edit", "comments",
    "live_comments", "mentions", "message_reads", "messaging_referrals", "message_deliveries", "message_edits",
    "messaging_handovers", "messaging_policy_enforcement", "response_feedback",
}
SEND_KINDS = ("image", "audio", "video", "file")


class GraphFault(Exception):
    """An error answer in Meta's shape: {"error": {message, type, code, error_subcode, fbtrace_id}}."""

    def __init__(self, code: int, message: str, *, subcode: int | None = None, http_status: int | None = None,
                 error_type: str = "OAuthException", headers: dict | None = None, is_transient: bool | None = None):
        super().__init__(message)
        self.code = code
        self.subcode = subcode
        self.message = message
        self.error_type = error_type
        self.http_status = http_status or (500 if code in (1, 2) else 400)
        self.headers = headers or {}
        self.is_transient = is_transient if is_transient is not None else code in (1, 2, 4, 17, 32, 613)

    def response(self, fbtrace_id: str) -> Response:
        error = {"message": self.message, "type": self.error_type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["is_transient"] = self.is_transient
        error["fbtrace_id"] = fbtrace_id
        response = jsonify({"error": error})
        response.status_code = self.http_status
        response.headers.update(self.headers)
        return response


def not_found(object_id: str, error_type: str = "IGApiException") -> GraphFault:
    return GraphFault(100, f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be loaded "
                           "due to missing permissions, or does not support this operation.",
                      subcode=33, error_type=error_type)


def bad_param(message: str, subcode: int | None = None) -> GraphFault:
    return GraphFault(100, f"(#100) {message}", subcode=subcode)


# --- Rate limits ----------------------------------------------------------------------

class RateBuckets:
    """Token buckets per (account, API): `rate` calls a second with a burst of `rate`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], tuple[float, float]] = {}  # -> (tokens, last refill)
        self.rejected: deque[tuple[str, str, float]] = deque(maxlen=10_000)  # (account, bucket, time)

    def take(self, account_id: str, bucket: str, rate: float | None, capacity: float | None = None) -> float:
        """Spend one call; raises GraphFault when none is left; returns the share used (0-100)."""
        if not rate:
            return 0.0
        capacity = capacity or max(float(rate), 1.0)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get((account_id, bucket), (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate)
            if tokens < 1.0:
                self._state[(account_id, bucket)] = (tokens, now)
                self.rejected.append((account_id, bucket, time.time()))
                used = 100.0
                limited = bucket.startswith("send") or bucket == "private_reply"
                raise GraphFault(613 if limited else 4,
                                 "(#613) Calls to this api have exceeded the rate limit." if limited
                                 else "(#4) Application request limit reached",
                                 headers=usage_header(account_id, used, regain_minutes=0))
            tokens -= 1.0
            self._state[(account_id, bucket)] = (tokens, now)
            return round((capacity - tokens) / capacity * 100, 1)


def usage_header(account_id: str, used: float, regain_minutes: float = 0) -> dict:
    value = {account_id: [{"type": "instagram", "call_count": int(used), "total_cputime": int(used // 4),
                           "total_time": int(used // 4), "estimated_time_to_regain_access": regain_minutes}]}
    return {"X-Business-Use-Case-Usage": json.dumps(value, separators=(",", ":"))}


# --- The request pipeline --------------------------------------------------------------

@dataclass
class Ctx:
    """What a view needs about its request."""

    sim: object
    account: Account | None
    token: str | None
    token_in_query: bool

    @property
    def world(self):
        return self.sim.world

    def link(self, path: str, params: dict) -> str:
        """A full paging URL on this host and version, as Meta writes them."""
        params = {k: v for k, v in params.items() if v is not None}
        if self.token_in_query and self.token:
            params["access_token"] = self.token
        version = request.environ.get("sim.graph_version")
        prefix = f"/{version}" if version else ""
        return f"{request.host_url.rstrip('/')}{prefix}/{path}?{urlencode(params)}"


def _sim():
    return current_app.extensions["sim"]


def _token() -> tuple[str | None, bool]:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip(), False
    token = request.args.get("access_token") or request.form.get("access_token")
    return (token or None), bool(token)


def _authenticate(sim) -> tuple[Account, str, bool]:
    token, in_query = _token()
    if not token:
        raise GraphFault(2500, "An active access token must be used to query information about the current user.")
    account = sim.world.account_for_token(token)
    if account is None:
        raise GraphFault(190, "Invalid OAuth access token - Cannot parse access token")
    if account.token_revoked and token == account.token:
        raise GraphFault(190, "Error validating access token: The session has been invalidated because the user "
                              "changed their password or Facebook has changed the session for security reasons.",
                         subcode=460)
    now = sim.clock.now()
    if account.token_expires_at is not None and now >= account.token_expires_at:
        day = datetime.fromtimestamp(account.token_expires_at, timezone.utc).strftime("%A, %d-%b-%y %H:%M:%S UTC")
        raise GraphFault(190, f"Error validating access token: Session has expired on {day}. The current time is "
                              f"{datetime.fromtimestamp(now, timezone.utc).strftime('%A, %d-%b-%y %H:%M:%S UTC')}.",
                         subcode=463)
    return account, token, in_query


def _run(endpoint: str, view, *, bucket: str | None = None, auth: bool = True):
    sim = _sim()
    account = None
    status_code = None
    try:
        ctx = Ctx(sim, None, None, False)
        if auth:
            ctx.account, ctx.token, ctx.token_in_query = _authenticate(sim)
            account = ctx.account
        injected = sim.take_failure(endpoint)
        if injected is not None:
            raise injected
        usage = None
        if bucket and account is not None:
            usage = sim.buckets.take(account.ig_user_id, bucket, getattr(sim.settings.limits, bucket))
        result = view(ctx)
        response = result if isinstance(result, Response) else jsonify(result)
        if usage is not None and sim.settings.usage_headers:
            response.headers.update(usage_header(account.ig_user_id, usage))
    except GraphFault as fault:
        response = fault.response(sim.world.fbtrace_id())
        status_code = fault.code
    except FieldSyntaxError as exc:
        response = GraphFault(2500, str(exc)).response(sim.world.fbtrace_id())
        status_code = 2500
    faults = sim.settings.faults
    if faults.latency or faults.latency_jitter:
        time.sleep(faults.latency + (sim.world.rng.random() * faults.latency_jitter if faults.latency_jitter else 0))
    sim.record_call(request.method, endpoint, account.ig_user_id if account else None, response.status_code,
                    status_code)
    return response


def _owned(ctx: Ctx, object_id: str) -> Account:
    """The account an owner path segment names; it must be the token's own."""
    if object_id == "me":
        return ctx.account
    account = ctx.world.account_by_any_id(object_id)
    if account is None or account is not ctx.account:
        raise not_found(object_id)
    return account


def _limit(spec_params: dict, default: int = 25) -> int:
    raw = spec_params.get("limit", request.args.get("limit"))
    try:
        limit = int(raw) if raw not in (None, "") else default
    except ValueError:
        raise bad_param("Param limit must be an integer") from None
    return max(1, min(limit, 100))


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"sim:{offset}".encode()).decode().rstrip("=")


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, number = text.partition(":")
        if kind != "sim":
            raise ValueError
        return max(0, int(number))
    except ValueError:
        raise bad_param("Invalid cursor") from None


def _edge(ctx: Ctx, items: list, render, *, limit: int, after: str | None, path: str, params: dict) -> dict:
    """One page of an edge, newest first, with Meta's cursors and a full `next` link."""
    start = _offset(after)
    page = items[start:start + limit]
    body: dict = {"data": [render(item) for item in page]}
    if page:
        paging: dict = {"cursors": {"before": _cursor(start), "after": _cursor(start + len(page))}}
        if start + len(page) < len(items):
            paging["next"] = ctx.link(path, {**params, "limit": limit, "after": _cursor(start + len(page))})
        if start > 0:
            paging["previous"] = ctx.link(path, {**params, "limit": limit, "before": _cursor(start)})
        body["paging"] = paging
    return body


def _nonexisting(spec: FieldSpec, node: str) -> GraphFault:
    return GraphFault(100, f"(#100) Tried accessing nonexisting field ({spec.name}) on node type ({node})")


# --- Rendering ------------------------------------------------------------------------

def _participant(ctx: Ctx, user_id: str) -> dict:
    account = ctx.world.accounts.get(user_id)
    if account is not None:
        return {"username": account.username, "id": account.ig_user_id}
    customer = ctx.world.customers.get(user_id)
    return {"username": customer.username if customer else "", "id": user_id}


def render_conversation(ctx: Ctx, conversation: Conversation, specs: list[FieldSpec]) -> dict:
    out: dict = {}
    for spec in specs:
        if spec.name == "id":
            out["id"] = conversation.id
        elif spec.name == "updated_time":
            out["updated_time"] = iso(conversation.updated_ms / 1000)
        elif spec.name == "participants":
            out["participants"] = {"data": [_participant(ctx, conversation.account_id),
                                            _participant(ctx, conversation.customer_id)]}
        elif spec.name == "messages":
            out["messages"] = messages_edge(ctx, conversation, spec.sub, spec.params, after=spec.params.get("after"))
        elif spec.name == "message_count":
            out["message_count"] = len(conversation.visible())
        elif spec.name == "can_reply":
            customer = ctx.world.customers[conversation.customer_id]
            out["can_reply"] = _window_open(ctx.sim, customer)
        else:
            raise _nonexisting(spec, "Conversation")
    if "id" not in out:
        out["id"] = conversation.id
    return out


def messages_edge(ctx: Ctx, conversation: Conversation, sub: list[FieldSpec] | None, params: dict,
                  after: str | None) -> dict:
    sub = sub or parse(None, "id,created_time")
    recent = {m.mid for m in conversation.visible()[:20]}
    limit = _limit(params, 20)
    return _edge(ctx, conversation.visible(), lambda m: render_message(ctx, m, sub, detail=m.mid in recent),
                 limit=limit, after=after, path=f"{conversation.id}/messages", params={"fields": unparse(sub)})


def render_message(ctx: Ctx, message: Message, specs: list[FieldSpec], *, detail: bool) -> dict:
    """A message; older than the thread's 20 newest, only its id and time."""
    sim = ctx.sim
    out: dict = {}
    for spec in specs:
        name = spec.name
        if name == "id":
            out["id"] = message.mid
        elif name == "created_time":
            out["created_time"] = iso(message.timestamp_ms / 1000)
        elif not detail:
            if name not in MESSAGE_FIELDS:
                raise _nonexisting(spec, "Message")
        elif name == "from":
            out["from"] = _participant(ctx, message.sender_id)
        elif name == "to":
            out["to"] = {"data": [_participant(ctx, message.recipient_id)]}
        elif name == "message":
            out["message"] = message.text or ""
        elif name == "attachments":
            data = _api_attachments(sim, message)
            if data:
                out["attachments"] = {"data": data}
        elif name == "shares":
            data = _api_shares(sim, message)
            if data:
                out["shares"] = {"data": data}
        elif name == "story":
            if message.story:
                out["story"] = _api_story(sim, message)
        elif name == "reply_to":
            if message.reply_to and message.reply_to.get("mid"):
                replied = ctx.world.messages.get(message.reply_to["mid"])
                out["reply_to"] = {"mid": message.reply_to["mid"],
                                   "is_self_reply": bool(replied and replied.sender_id == message.sender_id)}
        elif name == "reactions":
            if message.reactions:
                by_reaction: dict[str, list] = {}
                for user_id, reaction in message.reactions.items():
                    by_reaction.setdefault(reaction, []).append(_participant(ctx, user_id))
                out["reactions"] = {"data": [{"reaction": r, "users": u} for r, u in by_reaction.items()]}
        elif name == "is_unsupported":
            out["is_unsupported"] = message.is_unsupported
        else:
            raise _nonexisting(spec, "Message")
    if "id" not in out:
        out["id"] = message.mid
    return out


MESSAGE_FIELDS = {"id", "created_time", "from", "to", "message", "attachments", "shares", "story", "reply_to",
                  "reactions", "is_unsupported"}


def _asset_of(message: Message, index: int) -> str | None:
    return message.asset_ids[index] if index < len(message.asset_ids) else None


def _api_attachments(sim, message: Message) -> list[dict]:
    out = []
    for index, attachment in enumerate(message.attachments):
        kind = attachment.get("type")
        if kind not in ("image", "video", "audio", "file"):
            continue
        asset_id = _asset_of(message, index)
        asset = sim.cdn.get(asset_id) if asset_id else None
        url = sim.cdn.attachment_url(asset_id, sim.settings.attachment_url_ttl) if asset_id else None
        item: dict = {"id": f"{message.mid[-12:]}{index}", "mime_type": asset.mime if asset else "",
                      "name": asset.name if asset else f"{kind}-{index}"}
        if kind == "image":
            item["image_data"] = {"width": 48, "height": 48, "max_width": 48, "max_height": 48, "url": url,
                                  "preview_url": url}
        elif kind == "video":
            item["video_data"] = {"width": 640, "height": 640, "url": url, "preview_url": url}
        else:
            item["file_url"] = url
        out.append(item)
    return out


def _api_shares(sim, message: Message) -> list[dict]:
    out = []
    for index, attachment in enumerate(message.attachments):
        if attachment.get("type") not in ("share", "ig_post", "ig_reel", "reel"):
            continue
        asset_id = _asset_of(message, index)
        link = sim.cdn.attachment_url(asset_id, sim.settings.attachment_url_ttl) if asset_id else None
        out.append({"link": link})
    return out


def _api_story(sim, message: Message) -> dict:
    story = message.story
    kind = "mention" if "mention" in story else "reply_to"
    item = story[kind]
    link = None
    if item.get("asset_id") and sim.clock.now() < item.get("expires_at", 0):
        link = sim.cdn.attachment_url(item["asset_id"], item["expires_at"] - sim.clock.now())
    return {kind: {"link": link, "id": item["id"]}}


def render_profile(ctx: Ctx, customer, specs: list[FieldSpec]) -> dict:
    sim = ctx.sim
    out: dict = {}
    for spec in specs:
        name = spec.name
        if name == "id":
            out["id"] = customer.igsid
        elif name == "name":
            out["name"] = customer.name
        elif name == "username":
            out["username"] = customer.username
        elif name == "profile_pic":
            asset = sim.profile_pic_asset(customer.igsid)
            out["profile_pic"] = sim.cdn.picture_url(asset, sim.settings.profile_pic_ttl)
        elif name == "follower_count":
            out["follower_count"] = customer.follower_count
        elif name == "is_user_follow_business":
            out["is_user_follow_business"] = customer.follows_business
        elif name == "is_business_follow_user":
            out["is_business_follow_user"] = customer.business_follows
        elif name == "is_verified_user":
            out["is_verified_user"] = customer.is_verified
        else:
            raise _nonexisting(spec, "IGUser")
    out.setdefault("id", customer.igsid)
    return out


def render_media(ctx: Ctx, media: Media, specs: list[FieldSpec]) -> dict:
    sim = ctx.sim
    out: dict = {}
    for spec in specs:
        name = spec.name
        if name == "id":
            out["id"] = media.id
        elif name == "caption":
            if media.caption is not None:
                out["caption"] = media.caption
        elif name in ("media_type", "media_product_type", "permalink", "username"):
            out[name] = getattr(media, name)
        elif name == "media_url":
            if not media.copyrighted and media.asset_id:
                out["media_url"] = sim.cdn.picture_url(media.asset_id, sim.settings.profile_pic_ttl)
        elif name == "thumbnail_url":
            if media.media_type == "VIDEO" and media.asset_id:
                out["thumbnail_url"] = sim.cdn.picture_url(media.asset_id, sim.settings.profile_pic_ttl)
        elif name == "timestamp":
            out["timestamp"] = iso(media.timestamp)
        elif name == "shortcode":
            out["shortcode"] = media.permalink.rstrip("/").rsplit("/", 1)[-1]
        elif name == "owner":
            out["owner"] = {"id": media.owner_id}
        elif name in ("like_count", "comments_count"):
            out[name] = 0
        else:
            raise _nonexisting(spec, "IGMedia")
    out.setdefault("id", media.id)
    return out


def render_account(ctx: Ctx, account: Account, specs: list[FieldSpec], *, via_me: bool) -> dict:
    out: dict = {}
    for spec in specs:
        name = spec.name
        if name == "id":
            # Instagram Login: /me `id` is app-scoped; the webhook id is `user_id`.
            out["id"] = account.app_scoped_id if via_me else account.ig_user_id
        elif name == "user_id":
            out["user_id"] = account.ig_user_id
        elif name in ("username", "name"):
            out[name] = getattr(account, name)
        elif name == "account_type":
            out["account_type"] = "BUSINESS"
        elif name == "profile_picture_url":
            asset = ctx.sim.profile_pic_asset(account.ig_user_id)
            out["profile_picture_url"] = ctx.sim.cdn.picture_url(asset, ctx.sim.settings.profile_pic_ttl)
        elif name == "followers_count":
            out["followers_count"] = 1000
        elif name == "media_count":
            out["media_count"] = sum(1 for m in ctx.world.media.values() if m.owner_id == account.ig_user_id)
        else:
            raise _nonexisting(spec, "User")
    out.setdefault("id", account.app_scoped_id if via_me else account.ig_user_id)
    return out


# --- The window -------------------------------------------------------------------------

def _window_open(sim, customer, *, human_agent: bool = False) -> bool:
    if customer.last_customer_ts_ms is None:
        return False
    age = sim.clock.now() - customer.last_customer_ts_ms / 1000
    if age <= sim.settings.window:
        return True
    account = sim.world.accounts[customer.account_id]
    return human_agent and account.human_agent and age <= sim.settings.human_agent_window


# --- Routes: reads ----------------------------------------------------------------------

@bp.get("/me")
def me():
    """The token's account."""
    def view(ctx):
        return render_account(ctx, ctx.account, parse(request.args.get("fields"), "id"), via_me=True)
    return _run("me", view)


@bp.get("/<object_id>")
def node(object_id: str):
    """Any node by id: a message, conversation, customer profile, media object or account."""
    sim = _sim()
    world = sim.world
    with world.lock:
        message = world.messages.get(object_id)
        conversation = world.conversations.get(object_id)
        customer = world.customers.get(object_id)
        media = world.media.get(object_id)
        account = world.account_by_any_id(object_id)

    if message is not None:
        def view(ctx):
            with world.lock:
                conv = world.conversations[message.conversation_id]
                if conv.account_id != ctx.account.ig_user_id or message.deleted or not world.detail_allowed(message):
                    # Meta: details only for the 20 newest messages; older ones read as deleted.
                    raise not_found(object_id)
                return render_message(ctx, message, parse(request.args.get("fields"), "id,created_time"), detail=True)
        return _run("message", view, bucket="conversations")
    if conversation is not None:
        def view(ctx):
            with world.lock:
                if conversation.account_id != ctx.account.ig_user_id:
                    raise not_found(object_id)
                return render_conversation(ctx, conversation, parse(request.args.get("fields"), "id"))
        return _run("conversation", view, bucket="conversations")
    if customer is not None:
        def view(ctx):
            with world.lock:
                if customer.account_id != ctx.account.ig_user_id:
                    raise not_found(object_id)
                if not customer.available:
                    raise GraphFault(551, "(#551) This person isn't available right now.", subcode=1545041)
                if not customer.has_written:
                    raise GraphFault(230, "(#230) User consent is required to access user profile",
                                     error_type="IGApiException")
                return render_profile(ctx, customer, parse(request.args.get("fields"), "id"))
        return _run("profile", view, bucket="profile")
    if media is not None:
        def view(ctx):
            with world.lock:
                if media.owner_id != ctx.account.ig_user_id:
                    # Only the token's own media can be read.
                    raise not_found(object_id)
                return render_media(ctx, media, parse(request.args.get("fields"), "id"))
        return _run("media", view)
    if account is not None:
        def view(ctx):
            if account is not ctx.account:
                raise not_found(object_id)
            return render_account(ctx, account, parse(request.args.get("fields"), "id"), via_me=False)
        return _run("account", view)

    def missing(ctx):
        raise not_found(object_id)
    return _run("unknown", missing)


@bp.get("/<owner_id>/conversations")
def conversations(owner_id: str):
    """The account's conversations, newest first, paged."""
    def view(ctx):
        world = ctx.world
        account = _owned(ctx, owner_id)
        platform = request.args.get("platform")
        if platform and platform not in ("instagram", "messenger"):
            raise bad_param("Param platform must be one of {MESSENGER, INSTAGRAM}")
        # On a Page, only platform=instagram lists Instagram threads.
        if owner_id == account.page_id and platform != "instagram":
            return {"data": []}
        specs = parse(request.args.get("fields"), "id,updated_time")
        user_id = request.args.get("user_id")
        now = ctx.sim.clock.now()
        with world.lock:
            items = [c for c in world.conversations.values() if c.account_id == account.ig_user_id and c.messages]
            if user_id:
                items = [c for c in items if c.customer_id == user_id]

            def listed(c: Conversation) -> bool:
                customer = world.customers[c.customer_id]
                in_requests = not customer.follows_business and not c.business_replied
                return not (in_requests and now - c.updated_ms / 1000 > 30 * 24 * 3600)

            items = sorted(filter(listed, items), key=lambda c: c.updated_ms, reverse=True)
            params = {"platform": platform, "fields": unparse(specs), "user_id": user_id}
            return _edge(ctx, items, lambda c: render_conversation(ctx, c, specs), limit=_limit({}, 25),
                         after=request.args.get("after"), path=f"{owner_id}/conversations", params=params)
    return _run("conversations", view, bucket="conversations")


@bp.get("/<conversation_id>/messages")
def conversation_messages(conversation_id: str):
    """A conversation's messages edge (where paging.next of a conversation leads)."""
    def view(ctx):
        world = ctx.world
        with world.lock:
            conversation = world.conversations.get(conversation_id)
            if conversation is None or conversation.account_id != ctx.account.ig_user_id:
                raise not_found(conversation_id)
            specs = parse(request.args.get("fields"), "id,created_time")
            return messages_edge(ctx, conversation, specs, {}, after=request.args.get("after"))
    return _run("messages", view, bucket="conversations")


@bp.get("/<owner_id>/media")
def own_media(owner_id: str):
    """The account's own media, newest first."""
    def view(ctx):
        account = _owned(ctx, owner_id)
        specs = parse(request.args.get("fields"), "id")
        with ctx.world.lock:
            items = sorted((m for m in ctx.world.media.values() if m.owner_id == account.ig_user_id),
                           key=lambda m: m.timestamp, reverse=True)
            return _edge(ctx, items, lambda m: render_media(ctx, m, specs), limit=_limit({}, 25),
                         after=request.args.get("after"), path=f"{owner_id}/media", params={"fields": unparse(specs)})
    return _run("own_media", view)


# --- Routes: webhook subscription --------------------------------------------------------

@bp.route("/<owner_id>/subscribed_apps", methods=["GET", "POST", "DELETE"])
def subscribed_apps(owner_id: str):
    """Which webhook fields this app receives for the account; subscribe or unsubscribe."""
    def view(ctx):
        account = _owned(ctx, owner_id)
        sim = ctx.sim
        with ctx.world.lock:
            if request.method == "GET":
                if not account.subscribed_fields:
                    return {"data": []}
                return {"data": [{"id": sim.settings.app_id, "name": "Inbox (simulated)",
                                  "subscribed_fields": sorted(account.subscribed_fields)}]}
            if request.method == "DELETE":
                account.subscribed_fields.clear()
                return {"success": True}
            raw = request.values.get("subscribed_fields", "")
            wanted = [f.strip() for f in raw.split(",") if f.strip()]
            if not wanted:
                raise bad_param("The parameter subscribed_fields is required")
            for index, name in enumerate(wanted):
                if name not in KNOWN_FIELDS:
                    names = ", ".join(sorted(KNOWN_FIELDS))
                    raise bad_param(f"Param subscribed_fields[{index}] must be one of {{{names}}}")
            account.subscribed_fields = set(wanted)
            return {"success": True}
    return _run("subscribed_apps", view)


# --- Routes: the Send API ----------------------------------------------------------------

def _json_values() -> dict:
    """The send body: JSON, or a form whose values are JSON strings (Messenger's form style)."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise bad_param("Invalid JSON body")
        return body
    out = {}
    for key, value in request.form.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _url_ok(url) -> bool:
    return isinstance(url, str) and url.startswith(("http://", "https://")) and len(url) < 2048


@bp.post("/<owner_id>/messages")
def send(owner_id: str):
    """The Send API: messages and sender actions."""
    def view(ctx):
        account = _owned(ctx, owner_id)
        body = _json_values()
        return ctx.sim.handle_send(account, body)
    return _run("send", view, bucket="send")


def parse_send(sim, account: Account, body: dict):
    """Validate a Send API body; returns (customer, message or None, sender action or None)."""
    world = sim.world
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or not recipient.get("id"):
        raise bad_param("The parameter recipient is required")
    customer = world.customers.get(str(recipient["id"]))
    if customer is None or customer.account_id != account.ig_user_id:
        raise bad_param("No matching Instagram user", subcode=2534014)
    message, action = body.get("message"), body.get("sender_action")
    if message is not None and action is not None:
        raise bad_param("sender_action cannot be sent together with message")
    if message is None and action is None:
        raise bad_param("The parameter message is required")
    if action is not None:
        if action not in ("typing_on", "typing_off", "mark_seen", "react", "unreact"):
            raise bad_param("Param sender_action must be one of {typing_on, typing_off, mark_seen, react, unreact}")
        return customer, None, action
    if not isinstance(message, dict):
        raise bad_param("Param message must be an object")
    text = message.get("text")
    attachments = message.get("attachments")
    attachment = message.get("attachment")
    given = [x for x in (text, attachments, attachment) if x is not None]
    if len(given) != 1:
        raise bad_param("A message must have exactly one of text, attachment or attachments")
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise bad_param("Param message[text] must be a non-empty string")
        if len(text.encode("utf-8")) > 1000:
            raise bad_param("Length of param message[text] must be less than or equal to 1000")
        return customer, {"text": text}, None
    items = attachments if attachments is not None else [attachment]
    if isinstance(items, dict):  # `attachments` may also be a single object
        items = [items]
    if not isinstance(items, list) or not items:
        raise bad_param("Param message[attachments] must be a non-empty list")
    if attachments is not None and len(items) > 10:
        raise bad_param("At most 10 images can be sent in one message")
    parsed = []
    for item in items:
        if not isinstance(item, dict):
            raise bad_param("Each attachment must be an object")
        kind = str(item.get("type") or "")
        payload = item.get("payload") or {}
        if attachments is not None and kind != "image":
            raise bad_param("Only images can be sent as a list of attachments; use attachment for audio, video "
                            "and file")
        if kind == "like_heart":
            parsed.append({"type": "like_heart"})
            continue
        if kind == "MEDIA_SHARE":
            media = world.media.get(str(payload.get("id")))
            if media is None or media.owner_id != account.ig_user_id:
                raise not_found(str(payload.get("id")))
            parsed.append({"type": "MEDIA_SHARE", "media_id": media.id})
            continue
        if kind not in SEND_KINDS:
            raise bad_param(f"Param message[attachment][type] must be one of {{{', '.join(SEND_KINDS)}, "
                            "like_heart, MEDIA_SHARE}")
        if payload.get("attachment_id"):
            parsed.append({"type": kind, "attachment_id": str(payload["attachment_id"])})
        elif _url_ok(payload.get("url")):
            parsed.append({"type": kind, "url": payload["url"]})
        else:
            raise bad_param("Param message[attachment][payload][url] must be a valid URL", subcode=2018047)
    return customer, {"attachments": parsed}, None


def check_can_send(sim, account: Account, customer, body: dict, *, window: bool = True) -> None:
    """Who may receive what: the 24-hour window (not for private replies), blocked and unavailable users."""
    if not account.dm_access:
        raise GraphFault(200, "(#200) The account owner has disabled access to Instagram Direct messages",
                         subcode=2534041)
    if not customer.available:
        raise GraphFault(551, "(#551) This person isn't available right now.", subcode=1545041)
    human_agent = body.get("tag") == "HUMAN_AGENT"
    if window and not _window_open(sim, customer, human_agent=human_agent):
        raise GraphFault(10, "(#10) This message is sent outside of allowed window.", subcode=2534022)


def private_reply_target(sim, account: Account, comment_id: str):
    """The comment a private reply answers and its author (the Send API's recipient.comment_id)."""
    world = sim.world
    comment = world.comments.get(comment_id)
    media = world.media.get(comment.media_id) if comment is not None else None
    if comment is None or comment.deleted or media is None or media.owner_id != account.ig_user_id:
        raise not_found(comment_id)
    if comment.own:
        raise bad_param("Cannot send a private reply to your own comment")
    customer = world.customers.get(comment.author_id)
    if customer is None:
        raise bad_param("No matching Instagram user", subcode=2534014)
    if comment.private_reply_mid is not None:
        # Meta allows one private reply per comment (the exact error is not documented).
        raise GraphFault(10, "(#10) A private reply has already been sent to this comment.", subcode=2534023)
    if sim.clock.now() - comment.timestamp > sim.settings.private_reply_window:
        raise GraphFault(10, "(#10) This message is sent outside of allowed window.", subcode=2534022)
    return comment, customer


# --- Routes: the Comments API ---------------------------------------------------------------

def _params() -> dict:
    """Graph write parameters: in the query string (the usual form), a form body, or JSON."""
    values = {k: v for k, v in request.args.items() if k != "access_token"}
    if request.is_json:
        body = request.get_json(silent=True)
        values.update(body if isinstance(body, dict) else {})
    else:
        values.update({k: v for k, v in request.form.items() if k != "access_token"})
    return values


def _comment_on_own_media(ctx: Ctx, comment_id: str):
    comment = ctx.world.comments.get(comment_id)
    media = ctx.world.media.get(comment.media_id) if comment is not None else None
    if comment is None or comment.deleted or media is None or media.owner_id != ctx.account.ig_user_id:
        raise not_found(comment_id)
    return comment, media


@bp.post("/<comment_id>/replies")
def comment_replies(comment_id: str):
    """A public reply under a comment on the account's media: {"id": <new comment id>}."""
    def view(ctx):
        values = _params()
        text = values.get("message")
        if not isinstance(text, str) or not text.strip():
            raise bad_param("The parameter message is required")
        if len(text) > 2200:
            raise bad_param("Param message must be at most 2200 characters")
        with ctx.world.lock:
            comment, media = _comment_on_own_media(ctx, comment_id)
        return ctx.sim.reply_to_comment(ctx.account, comment, media, text)
    return _run("comment_reply", view, bucket="comments")


@bp.post("/<object_id>")
def update_node(object_id: str):
    """Hide or show a comment on the account's media (`hide=true|false`)."""
    def view(ctx):
        values = _params()
        hide = str(values.get("hide", "")).lower()
        if hide not in ("true", "false"):
            raise bad_param("The parameter hide is required (true or false)")
        with ctx.world.lock:
            comment, _ = _comment_on_own_media(ctx, object_id)
            if comment.own:
                raise bad_param("You cannot hide your own comment")
            comment.hidden = hide == "true"
        return {"success": True}
    return _run("comment_hide", view, bucket="comments")


@bp.delete("/<object_id>")
def delete_node(object_id: str):
    """Delete a comment on the account's media (anyone's)."""
    def view(ctx):
        with ctx.world.lock:
            comment, _ = _comment_on_own_media(ctx, object_id)
            comment.deleted = True
        return {"success": True}
    return _run("comment_delete", view, bucket="comments")


@bp.get("/<media_id>/comments")
def media_comments(media_id: str):
    """A media object's comments (top level, newest first), with their replies' count."""
    def view(ctx):
        world = ctx.world
        with world.lock:
            media = world.media.get(media_id)
            if media is None or media.owner_id != ctx.account.ig_user_id:
                raise not_found(media_id)
            items = sorted((c for c in world.comments.values() if c.media_id == media_id and not c.deleted),
                           key=lambda c: c.timestamp, reverse=True)
        specs = parse(request.args.get("fields"), "id,text,timestamp")

        def render(c):
            out = {"id": c.id}
            names = {s.name for s in specs}
            for name, value in (("text", c.text), ("timestamp", iso(c.timestamp)), ("username", c.username),
                                ("hidden", c.hidden), ("parent_id", c.parent_id),
                                ("from", {"id": c.author_id, "username": c.username}),
                                ("media", {"id": c.media_id})):
                if name in names and value is not None:
                    out[name] = value
            return out
        return _edge(ctx, items, render, limit=_limit(request.args), after=request.args.get("after"),
                     path=f"{media_id}/comments", params={"fields": request.args.get("fields")})
    return _run("media_comments", view, bucket="comments")


# --- Routes: tokens and OAuth --------------------------------------------------------------

@bp.get("/refresh_access_token")
def refresh_access_token():
    """Refresh a long-lived token (Instagram Login)."""
    def view(ctx):
        if request.args.get("grant_type") != "ig_refresh_token":
            raise bad_param("grant_type must be ig_refresh_token")
        return ctx.sim.refresh_token(ctx.account, ctx.token)
    return _run("refresh_token", view)


@bp.get("/access_token")
def exchange_token():
    """Exchange a short-lived token for a long-lived one."""
    def view(ctx):
        if request.args.get("grant_type") != "ig_exchange_token":
            raise bad_param("grant_type must be ig_exchange_token")
        if request.args.get("client_secret") != ctx.sim.settings.app_secret:
            raise GraphFault(101, "Error validating client secret.")
        return ctx.sim.issue_token(ctx.account, ttl=ctx.sim.settings.token_ttl)
    return _run("exchange_token", view)


@bp.get("/oauth/authorize")
def oauth_authorize():
    """The authorization window: the simulated person allows (the account named by
    `sim_username`, else the newest account) and is sent back with a code, or, with
    `settings.authorize_answer = "deny"`, cancels and is sent back with error=access_denied."""
    sim = _sim()
    redirect_uri = request.args.get("redirect_uri", "")
    if request.args.get("client_id") != sim.settings.app_id or not _url_ok(redirect_uri):
        return Response("Invalid client_id or redirect_uri", 400, mimetype="text/plain")
    if sim.settings.authorize_answer == "deny":
        params = {"error": "access_denied", "error_reason": "user_denied",
                  "error_description": "The user denied your request."}
    else:
        code = sim.oauth_code(request.args.get("sim_username"), redirect_uri)
        if code is None:
            return Response("No account to log in with", 400, mimetype="text/plain")
        params = {"code": code}
    if request.args.get("state") is not None:
        params["state"] = request.args["state"]
    separator = "&" if "?" in redirect_uri else "?"
    return redirect(f"{redirect_uri}{separator}{urlencode(params)}#_")


@bp.post("/oauth/access_token")
def oauth_access_token():
    """Exchange an authorization code for a short-lived token."""
    def view(ctx):
        sim = ctx.sim
        form = request.form
        if form.get("client_id") != sim.settings.app_id or form.get("client_secret") != sim.settings.app_secret:
            raise GraphFault(101, "Error validating client secret.")
        if form.get("grant_type") != "authorization_code":
            raise bad_param("grant_type must be authorization_code")
        account = sim.redeem_code(form.get("code", ""), form.get("redirect_uri", ""))
        if account is None:
            raise GraphFault(100, "Invalid authorization code", subcode=36007, error_type="OAuthException")
        grant = sim.issue_token(account, ttl=3600)
        return {"data": [{"access_token": grant["access_token"], "user_id": account.app_scoped_id,
                          "permissions": "instagram_business_basic,instagram_business_manage_messages"}]}
    return _run("oauth_token", view, auth=False)


def message_from_record(message: Message) -> dict:
    """The webhook `message` object for a stored message (echoes and replays)."""
    return events.message_body(message.mid, text=message.text, attachments=message.attachments or None,
                               is_echo=message.origin in ("api", "app"), reply_to=message.reply_to,
                               quick_reply=message.quick_reply, referral=message.referral,
                               is_unsupported=message.is_unsupported)
