"""The Simulator: one object holding the world, the Graph API, the webhook sender and the CDN."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from flask import after_this_request
from werkzeug.serving import WSGIRequestHandler, make_server

from . import events
from .app import create_sim_app
from .cdn import Cdn
from .control import AccountHandle, CustomerHandle
from .graph import (
    GraphFault, RateBuckets, bad_param, check_can_send, message_from_record, not_found, parse_send,
    private_reply_target,
)
from .settings import Settings
from .webhooks import WebhookSender
from .world import Account, Comment, Media, Received, SimClock, World

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    """Keep-alive connections, and no access log line per request (a busy simulator would drown its output)."""

    protocol_version = "HTTP/1.1"

    def log_request(self, code="-", size="-") -> None:
        pass


@dataclass(frozen=True)
class GraphCall:
    """One Graph API request as the simulator saw it."""

    at: float  # wall-clock seconds when it was answered
    method: str
    endpoint: str  # conversations, conversation, messages, message, profile, media, own_media, send, …
    account_id: str | None
    status: int  # HTTP status
    code: int | None  # Graph error code, None on success


@dataclass
class _Injected:
    endpoint: str
    fault: GraphFault
    times: int


class Simulator:
    """A stand-in for Meta: create it, add accounts and customers, `serve()` it over HTTP."""

    def __init__(self, settings: Settings | None = None, **values) -> None:
        self.settings = settings or Settings()
        if values:
            self.settings.update(values)
        self.clock = SimClock()
        self.world = World(self.clock, self.settings.seed)
        self.cdn = Cdn(self.clock, secrets.token_hex(16))
        self.webhooks = WebhookSender(self)
        self.buckets = RateBuckets()
        self.calls: deque[GraphCall] = deque(maxlen=100_000)  # bounded: a demo runs for days
        self._lock = threading.Lock()
        self._injected: list[_Injected] = []
        self._pics: dict[str, str] = {}
        self._codes: dict[str, tuple[str, str, float]] = {}
        self._server = None
        self._thread: threading.Thread | None = None
        self.url: str | None = None
        self.app = create_sim_app(self)

    # --- Serving ----------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Simulator:
        """Serve the Graph API, the CDN and the control API over real HTTP in a thread."""
        self._server = make_server(host, port, self.app, threaded=True, request_handler=_QuietHandler)
        self._server.daemon_threads = True
        # Keep-alive connections hold their threads; closing must not wait for clients to hang up.
        self._server.block_on_close = False
        self.url = f"http://{host}:{self._server.server_port}"
        self.cdn.base_url = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sim-http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.webhooks.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- Building the world -------------------------------------------------------------

    def add_account(self, username: str = "shop", **values) -> AccountHandle:
        """A professional account with a valid long-lived token (values: name, ig_user_id, token, page_id)."""
        values.setdefault("token_ttl", self.settings.token_ttl)
        state = self.world.add_account(username=username, **values)
        self.profile_pic_asset(state.ig_user_id)
        return AccountHandle(self, state)

    def account(self, ig_user_id: str) -> AccountHandle:
        state = self.world.account_by_any_id(str(ig_user_id))
        if state is None:
            raise KeyError(f"No simulated account {ig_user_id}.")
        return AccountHandle(self, state)

    def customer(self, igsid: str) -> CustomerHandle:
        state = self.world.customers.get(str(igsid))
        if state is None:
            raise KeyError(f"No simulated customer {igsid}.")
        return CustomerHandle(self, state)

    def add_foreign_post(self, caption: str | None = None, *, username: str = "another_brand",
                         media_type: str = "IMAGE", media_product_type: str = "FEED") -> Media:
        """A post that belongs to someone else: the Graph API answers 100/33 for it."""
        return self.world.add_media(owner=None, username=username, caption=caption, media_type=media_type,
                                    media_product_type=media_product_type, asset_id=self.cdn.add("image"))

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0, days: float = 0) -> None:
        """Move the simulator's clock: tokens expire, windows close, CDN links die."""
        self.clock.advance(seconds, minutes=minutes, hours=hours, days=days)

    # --- Webhooks -----------------------------------------------------------------------

    def connect_webhooks(self, callback_url: str, *, verify_token: str | None = None,
                         app_secret: str | None = None):
        """Set the callback (as in the App Dashboard) and run the handshake; returns the Handshake."""
        self.webhooks.configure(callback_url, verify_token=verify_token, app_secret=app_secret)
        return self.webhooks.verify()

    def hold(self, **kwargs):
        """See WebhookSender.hold: collect events, then deliver them batched or reordered."""
        return self.webhooks.hold(**kwargs)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every webhook (echoes after responses, retries) has been delivered or given up."""
        self.webhooks.settle(timeout)

    @property
    def deliveries(self):
        return list(self.webhooks.log)

    # --- Faults -------------------------------------------------------------------------

    @property
    def faults(self):
        return self.settings.faults

    def fail_next(self, endpoint: str, code: int, subcode: int | None = None, *, times: int = 1,
                  message: str | None = None, http_status: int | None = None, headers: dict | None = None,
                  error_type: str = "OAuthException") -> None:
        """Make the next `times` calls to endpoint ("*" for any) answer this Graph error.

        Endpoints: me, conversations, conversation, messages, message, profile, media,
        own_media, account, send, subscribed_apps, refresh_token, exchange_token.
        """
        fault = GraphFault(code, message or f"(#{code}) Simulated error", subcode=subcode, http_status=http_status,
                           headers=headers, error_type=error_type)
        with self._lock:
            self._injected.append(_Injected(endpoint, fault, times))

    def take_failure(self, endpoint: str) -> GraphFault | None:
        with self._lock:
            for item in self._injected:
                if item.endpoint in (endpoint, "*"):
                    item.times -= 1
                    if item.times <= 0:
                        self._injected.remove(item)
                    return item.fault
        return None

    def record_call(self, method: str, endpoint: str, account_id: str | None, status: int, code: int | None) -> None:
        with self._lock:
            self.calls.append(GraphCall(time.time(), method, endpoint, account_id, status, code))

    def calls_to(self, endpoint: str) -> list[GraphCall]:
        with self._lock:
            return [c for c in self.calls if c.endpoint == endpoint]

    # --- What the Graph routes ask of the simulator -----------------------------------------

    def profile_pic_asset(self, user_id: str) -> str:
        with self._lock:
            if user_id not in self._pics:
                self._pics[user_id] = self.cdn.add("image")
            return self._pics[user_id]

    def handle_send(self, account: Account, body: dict) -> dict:
        """The Send API: validate, record what the customer receives, answer, echo."""
        world = self.world
        with world.lock:
            recipient = body.get("recipient")
            comment = None
            if isinstance(recipient, dict) and recipient.get("comment_id") and not recipient.get("id"):
                # A private reply: Instagram finds the comment's author.
                comment, author = private_reply_target(self, account, str(recipient["comment_id"]))
                body = {**body, "recipient": {"id": author.igsid}}
            customer, message, action = parse_send(self, account, body)
            if action is not None:
                if comment is not None:
                    raise bad_param("A private reply must be a message")
                return self._sender_action(account, customer, action, body.get("payload") or {})
            if comment is not None:
                if message.get("attachments"):
                    raise bad_param("A private reply must be text")
                check_can_send(self, account, customer, body, window=False)
                self.buckets.take(account.ig_user_id, "private_reply",
                                  (self.settings.limits.private_replies_per_hour or 0) / 3600,
                                  capacity=self.settings.limits.private_replies_per_hour)
            else:
                check_can_send(self, account, customer, body)
            kinds = {a["type"] for a in message.get("attachments", [])}
            if kinds & {"audio", "video"}:
                self.buckets.take(account.ig_user_id, "send_media", self.settings.limits.send_media)
            attachments, asset_ids = self._echo_attachments(message.get("attachments", []))
            conversation = world.conversation(account, customer)
            stored = world.add_message(conversation, sender_id=account.ig_user_id, recipient_id=customer.igsid,
                                       origin="api", text=message.get("text"), attachments=attachments,
                                       asset_ids=asset_ids)
            conversation.business_replied = True
            if comment is not None:
                comment.private_reply_mid = stored.mid
            customer.received.append(Received(stored.mid, "api", stored.text,
                                              tuple(message.get("attachments", [])), stored.timestamp_ms,
                                              comment.id if comment is not None else None))
            event = events.messaging(account.ig_user_id, customer.igsid, stored.timestamp_ms,
                                     message=message_from_record(stored))
            ambiguous = self.settings.faults.send_ambiguous > 0
            if ambiguous:
                self.settings.faults.send_ambiguous -= 1
        if self.settings.faults.echo_before_response:
            self.webhooks.emit(account.ig_user_id, "echo", event)
        else:
            fire = self.webhooks.later()

            @after_this_request
            def echo_after(response):
                # Its own thread: the connection's thread must be free for the client's next request.
                response.call_on_close(lambda: threading.Thread(
                    target=fire, args=(account.ig_user_id, "echo", event), name="sim-echo", daemon=True).start())
                return response
        if ambiguous:
            # The send went through, but the answer says otherwise (error 1/1357046).
            raise GraphFault(1, "Received Invalid JSON reply.", subcode=1357046, http_status=500)
        return {"recipient_id": customer.igsid, "message_id": stored.mid}

    # --- Comments ---------------------------------------------------------------------------

    def comment_change(self, comment: Comment, *, verb: str | None = None) -> dict:
        """The `changes[]` item Meta sends for a comment (or its edit or deletion)."""
        with self.world.lock:
            media = self.world.media[comment.media_id]
            account = self.world.accounts[media.owner_id]
            return events.comment_change(comment, account_id=account.ig_user_id, account_username=account.username,
                                         media_product_type=media.media_product_type,
                                         self_scoped_id=account.app_scoped_id, verb=verb)

    def emit_comment(self, comment: Comment, *, verb: str | None = None, strict: bool = True):
        """Deliver a comment's webhook now (a person commented, edited or deleted)."""
        media = self.world.media[comment.media_id]
        kind = "live_comment" if comment.live else "comment"
        return self.webhooks.emit(media.owner_id, kind, self.comment_change(comment, verb=verb), strict=strict,
                                  key="changes")

    def reply_to_comment(self, account: Account, parent: Comment, media: Media, text: str) -> dict:
        """The Comments API's reply: a comment by the business, whose webhook follows the answer."""
        world = self.world
        with world.lock:
            top = parent.parent_id or parent.id  # Instagram threads one level deep
            reply = world.add_comment(media, author_id=account.ig_user_id, username=account.username, text=text,
                                      parent_id=top, own=True, live=parent.live)
            change = self.comment_change(reply)
        fire = self.webhooks.later()

        @after_this_request
        def webhook_after(response):
            response.call_on_close(lambda: threading.Thread(
                target=fire, args=(account.ig_user_id, "live_comment" if reply.live else "comment", change, "changes"),
                name="sim-comment", daemon=True).start())
            return response
        return {"id": reply.id}

    def _echo_attachments(self, sent: list[dict]) -> tuple[list[dict], list[str | None]]:
        """What the echo carries for each attachment: Meta's own CDN copy of it."""
        out, assets = [], []
        for item in sent:
            kind = item["type"]
            if kind == "MEDIA_SHARE":
                media = self.world.media[item["media_id"]]
                asset = media.asset_id or self.cdn.add("image")
                out.append({"type": "ig_post", "payload": {
                    "url": self.cdn.attachment_url(asset, self.settings.attachment_url_ttl),
                    "title": media.caption or "", "ig_post_media_id": media.id}})
            elif kind == "like_heart":
                asset = None
                out.append({"type": "like_heart"})
            else:
                asset = self.cdn.add(kind)
                out.append({"type": kind, "payload": {"url": self.cdn.attachment_url(
                    asset, self.settings.attachment_url_ttl)}})
            assets.append(asset)
        return out, assets

    def _sender_action(self, account: Account, customer, action: str, payload: dict) -> dict:
        if not account.dm_access:
            raise GraphFault(200, "(#200) The account owner has disabled access to Instagram Direct messages",
                             subcode=2534041)
        if not customer.available:
            raise GraphFault(551, "(#551) This person isn't available right now.", subcode=1545041)
        if action in ("react", "unreact"):
            mid = str(payload.get("message_id") or "")
            target = self.world.messages.get(mid)
            conversation = self.world.conversation(account, customer)
            if target is None or target.conversation_id != conversation.id:
                raise not_found(mid)
            if action == "react":
                target.reactions[account.ig_user_id] = str(payload.get("reaction") or "love")
            else:
                target.reactions.pop(account.ig_user_id, None)
        # The business's own reactions and other sender actions produce no webhook.
        customer.actions.append({"action": action, "payload": payload, "at_ms": self.clock.now_ms()})
        return {"recipient_id": customer.igsid}

    # --- Tokens and OAuth ------------------------------------------------------------------

    def issue_token(self, account: Account, *, ttl: float) -> dict:
        with self.world.lock:
            token = self.world.new_token()
            account.old_tokens.add(account.token)
            account.token = token
            account.token_revoked = False
            account.token_created_at = self.clock.now()
            account.token_expires_at = self.clock.now() + ttl
            self.world.tokens[token] = account.ig_user_id
        return {"access_token": token, "token_type": "bearer", "expires_in": int(ttl)}

    def refresh_token(self, account: Account, token: str) -> dict:
        if self.clock.now() - account.token_created_at < 24 * 3600:
            raise GraphFault(100, "(#100) The access token is less than 24 hours old and cannot be refreshed yet.",
                             error_type="IGApiException")
        return self.issue_token(account, ttl=self.settings.token_ttl)

    def oauth_code(self, username: str | None, redirect_uri: str) -> str | None:
        with self.world.lock:
            accounts = list(self.world.accounts.values())
            chosen = [a for a in accounts if a.username == username] if username else accounts[-1:]
            if not chosen:
                return None
            code = secrets.token_urlsafe(24)
            self._codes[code] = (chosen[0].ig_user_id, redirect_uri, self.clock.now() + 600)
            return code

    def redeem_code(self, code: str, redirect_uri: str) -> Account | None:
        with self.world.lock:
            found = self._codes.pop(code.removesuffix("#_"), None)
            if found is None or found[1] != redirect_uri or self.clock.now() > found[2]:
                return None
            return self.world.accounts.get(found[0])
