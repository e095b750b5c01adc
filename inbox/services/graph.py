"""The one Graph API client: every call the inbox makes to Meta goes through here.

    client = GraphClient.for_account(account)        # inside an app context
    for conv in client.list_conversations(fields="id,updated_time,participants"): ...
    result = client.send_text(igsid, "Hello")          # SendResult(recipient_id, message_id)

Instagram Login (graph.instagram.com, paths under `me`) is the default flavour; an
account with `api_flavour == "facebook"` talks to graph.facebook.com through its Page
(`/<page_id>/...`). Meta's errors become the typed exceptions below, chosen by
`code`/`error_subcode`, never by HTTP status
(https://developers.facebook.com/docs/graph-api/guides/error-handling).

Reads retry transient and throttling errors with backoff. Sends are tried once: a send
that may have gone through (1/1357046, a timeout after the request left) raises
AmbiguousSendFailure, and the echo webhook decides whether it arrived. Per-account rate
limits (Conversations API, Send API) are shared by every process through Redis; a call
waits for its slot instead of failing. Tokens travel in the Authorization header and are
never logged nor kept in exception text.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from flask import current_app
from requests.adapters import HTTPAdapter

from .. import metrics
from . import ratelimit
from .accounts import access_token

log = logging.getLogger(__name__)

PROFILE_FIELDS = ("name,username,profile_pic,follower_count,is_user_follow_business,"
                  "is_business_follow_user,is_verified_user")
MESSAGE_FIELDS = "id,created_time,from,to,message,attachments,shares,story,reply_to,reactions,is_unsupported"
MEDIA_FIELDS = "id,caption,media_type,media_product_type,media_url,permalink,thumbnail_url,timestamp,username"
ME_FIELDS = "user_id,username,name,profile_picture_url"
# Webhook fields the inbox needs, in each flavour's own names
# (https://developers.facebook.com/docs/graph-api/webhooks/reference/instagram).
WEBHOOK_FIELDS = {
    "instagram": ("messages", "message_echoes", "message_reactions", "messaging_postbacks",
                  "messaging_seen", "messaging_referral", "comments"),
    "facebook": ("messages", "message_reactions", "messaging_postbacks", "message_reads", "messaging_referrals"),
}
COMMENT_FIELDS = "id,text,timestamp,username,from,parent_id,hidden,media{id,media_product_type}"
ATTACHMENT_KINDS = ("image", "audio", "video", "file")
MAX_IMAGES = 10


# --- Tokens stay out of logs --------------------------------------------------------

_TOKEN_IN_URL = re.compile(r"(access_token|client_secret|fb_exchange_token)=[^&\s\"']+")


def redact(text: str) -> str:
    """Hide token-like query parameters in a URL or log line."""
    return _TOKEN_IN_URL.sub(r"\1=[redacted]", text)


class _RedactTokens(logging.Filter):
    """urllib3 logs every request line at DEBUG, query string included: hide tokens in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


if not any(isinstance(f, _RedactTokens) for f in logging.getLogger("urllib3.connectionpool").filters):
    logging.getLogger("urllib3.connectionpool").addFilter(_RedactTokens())


# --- Errors -------------------------------------------------------------------------

class GraphError(Exception):
    """A Graph API call failed; code/subcode are Meta's when Meta answered."""

    def __init__(self, message: str, *, code: int | None = None, subcode: int | None = None,
                 error_type: str | None = None, fbtrace_id: str | None = None,
                 http_status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.error_type = error_type
        self.fbtrace_id = fbtrace_id
        self.http_status = http_status
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        sub = f"/{self.subcode}" if self.subcode else ""
        return f"[{self.code}{sub}] {self.message}"


class TokenInvalid(GraphError):
    """190/102: the token expired or was revoked; the account must reconnect."""


class OutsideWindow(GraphError):
    """10/2534022 and kin: outside the messaging window; final until the customer writes."""


class UserUnavailable(GraphError):
    """551: the person isn't available (blocked the business, or turned messages off)."""


class RateLimited(GraphError):
    """4, 17, 32, 613, 80002, 80006, 341: throttled; retry_after (seconds) when Meta said."""


class PermissionDenied(GraphError):
    """10, 200-299, 368: the token or account may not do this."""


class ConsentRequired(PermissionDenied):
    """230: the profile can be read only after the person has written to the business."""


class InvalidRequest(GraphError):
    """100: a bad parameter; retrying the same request cannot help."""


class NotFound(InvalidRequest):
    """100/33: the object does not exist or is not the account's (another account's post)."""


class Transient(GraphError):
    """1, 2, 5xx, network: temporary; safe to retry (reads retry by themselves)."""


class AmbiguousSendFailure(GraphError):
    """A send that may have reached the customer (1/1357046, timeout): never resend blindly."""


_TOKEN_CODES = {190, 102}
_RATE_CODES = {4, 17, 32, 341, 613, 80002, 80006}
_WINDOW_SUBCODES = {2534022, 2018278, 2018065}
_AMBIGUOUS = (1, 1357046)


def error_class(code: int | None, subcode: int | None, *, sending: bool = False) -> type[GraphError]:
    """The exception class for Meta's code/subcode (the one place that decides)."""
    if code in _TOKEN_CODES:
        return TokenInvalid
    if (code, subcode) == _AMBIGUOUS:
        return AmbiguousSendFailure if sending else Transient
    if code in (1, 2):
        return Transient
    if code in _RATE_CODES:
        return RateLimited
    if code == 551 or (code == 10 and subcode == 2018108):  # 2018108: recipient not accepting
        return UserUnavailable
    if code == 10 and subcode in _WINDOW_SUBCODES:
        return OutsideWindow
    if code == 230:
        return ConsentRequired
    if code == 10 or code == 368 or (code is not None and 200 <= code <= 299):
        return PermissionDenied
    if code == 100:
        return NotFound if subcode == 33 else InvalidRequest
    return GraphError


def retry_after_from(headers) -> float | None:
    """Seconds until access returns, from X-Business-Use-Case-Usage (minutes in Meta's header)."""
    raw = headers.get("X-Business-Use-Case-Usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
        minutes = [float(item.get("estimated_time_to_regain_access") or 0)
                   for items in usage.values() for item in items]
    except (ValueError, AttributeError, TypeError):
        return None
    longest = max(minutes, default=0.0)
    return longest * 60 if longest > 0 else None


# --- Results ------------------------------------------------------------------------

@dataclass(frozen=True)
class SendResult:
    recipient_id: str
    message_id: str


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_in: int | None
    token_type: str = "bearer"

    def __repr__(self) -> str:  # the token must not reach logs through a repr
        return f"TokenGrant(expires_in={self.expires_in!r}, token_type={self.token_type!r})"


@dataclass(frozen=True)
class AuthorizationGrant:
    """What the OAuth token endpoint gives for a code: a short-lived (1 h) Instagram token."""

    access_token: str
    user_id: str | None  # app-scoped: not the webhook id (read /me user_id for that)
    permissions: tuple[str, ...] | None  # None when Meta did not say

    def __repr__(self) -> str:  # the token must not reach logs through a repr
        return f"AuthorizationGrant(user_id={self.user_id!r}, permissions={self.permissions!r})"


# --- One HTTP session per process ---------------------------------------------------

_session: requests.Session | None = None
_session_pid: int | None = None
_session_lock = threading.Lock()


def http_session() -> requests.Session:
    """The process's requests.Session (made again after a fork), pooling connections."""
    global _session, _session_pid
    with _session_lock:
        if _session is None or _session_pid != os.getpid():
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=8, pool_maxsize=64, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = "inbox-graph-client"
            _session, _session_pid = session, os.getpid()
        return _session


# --- The client ---------------------------------------------------------------------

class GraphClient:
    """Graph API calls for one Instagram account (one token)."""

    def __init__(self, token: str, *, ig_user_id: str, flavour: str = "instagram", page_id: str | None = None,
                 app=None):
        app = app or current_app._get_current_object()
        cfg = app.config
        if flavour not in WEBHOOK_FIELDS:
            raise ValueError(f"Unknown Graph API flavour {flavour!r}.")
        if flavour == "facebook" and not page_id:
            raise ValueError("The Facebook-Page flavour needs the account's page_id.")
        self._app = app
        self._token = token
        self.ig_user_id = str(ig_user_id)
        self.flavour = flavour
        self.page_id = page_id
        base = cfg["GRAPH_API_BASE"] if flavour == "instagram" else cfg["GRAPH_FACEBOOK_API_BASE"]
        self.base = base.rstrip("/")
        self.version = cfg["GRAPH_API_VERSION"]
        self.timeout = float(cfg["GRAPH_TIMEOUT_SECONDS"])
        self.retries = int(cfg["GRAPH_READ_RETRIES"])
        self.backoff = float(cfg["GRAPH_RETRY_BACKOFF_SECONDS"])
        self.max_retry_wait = float(cfg["GRAPH_MAX_RETRY_WAIT_SECONDS"])
        self.rates = {
            "conversations": cfg["GRAPH_CONVERSATIONS_RATE"],
            "send": cfg["GRAPH_SEND_RATE"],
            "send_media": cfg["GRAPH_SEND_MEDIA_RATE"],
            "profile": cfg["GRAPH_PROFILE_RATE"],
            "comments": cfg["GRAPH_COMMENTS_RATE"],
        }
        # Private replies have their own hourly budget (750 an hour for posts and reels).
        self.private_replies_per_hour = cfg["GRAPH_PRIVATE_REPLIES_PER_HOUR"]
        self._sleep = time.sleep

    @classmethod
    def for_account(cls, account, *, app=None) -> GraphClient:
        """A client for an Account row; its token is decrypted here and kept in memory only."""
        token = access_token(account)
        if not token:
            raise TokenInvalid(f"{account.label} has no access token.", code=190)
        return cls(token, ig_user_id=account.ig_user_id, flavour=account.api_flavour or "instagram",
                   page_id=account.page_id, app=app)

    def __repr__(self) -> str:
        return f"<GraphClient {self.flavour} {self.ig_user_id}>"

    @property
    def owner(self) -> str:
        """The path segment that names the account: `me`, or the Page id."""
        return "me" if self.flavour == "instagram" else str(self.page_id)

    # --- Reads ----------------------------------------------------------------------

    def me(self, fields: str = ME_FIELDS) -> dict:
        """The token's account; `user_id` is the webhook entry.id (Instagram Login)."""
        return self._read("GET", "me", params={"fields": fields})

    def list_conversations(self, *, fields: str = "id,updated_time", limit: int = 25,
                           user_id: str | None = None, max_pages: int | None = None) -> Iterator[dict]:
        """The account's Instagram conversations, newest first, following paging.next."""
        params = {"platform": "instagram", "fields": fields, "limit": limit}
        if user_id:
            params["user_id"] = user_id
        yield from self._pages(f"{self.owner}/conversations", params, bucket="conversations", max_pages=max_pages)

    def conversations_page(self, *, fields: str = "id,updated_time", limit: int = 25,
                           after: str | None = None) -> tuple[list[dict], str | None]:
        """One page of the account's conversations and the cursor of the next page (None: the last)."""
        params = {"platform": "instagram", "fields": fields, "limit": limit}
        if after:
            params["after"] = after
        body = self._read("GET", f"{self.owner}/conversations", params=params, bucket="conversations")
        paging = body.get("paging") or {}
        cursor = (paging.get("cursors") or {}).get("after") if paging.get("next") else None
        return list(body.get("data") or []), cursor

    def find_conversation(self, igsid: str) -> str | None:
        """The Graph conversation id with one customer, or None."""
        for conversation in self.list_conversations(fields="id", user_id=igsid, max_pages=1):
            return conversation["id"]
        return None

    def conversation_messages(self, conversation_id: str, *, fields: str = "id,created_time", limit: int = 20,
                              max_pages: int | None = None) -> Iterator[dict]:
        """A conversation's messages, newest first. Only the 20 newest carry details (Meta's rule)."""
        first = self._read("GET", conversation_id, params={"fields": f"messages.limit({int(limit)}){{{fields}}}"},
                           bucket="conversations")
        edge = first.get("messages") or {}
        yield from edge.get("data", [])
        next_url = (edge.get("paging") or {}).get("next")
        if next_url and (max_pages is None or max_pages > 1):
            yield from self._pages(next_url, None, bucket="conversations",
                                   max_pages=None if max_pages is None else max_pages - 1)

    def message(self, mid: str, fields: str = MESSAGE_FIELDS) -> dict:
        """One message's details (NotFound once it is older than the thread's 20 newest)."""
        return self._read("GET", mid, params={"fields": fields}, bucket="conversations")

    def profile(self, igsid: str, fields: str = PROFILE_FIELDS) -> dict:
        """A customer's profile (ConsentRequired until they have written to the business)."""
        return self._read("GET", igsid, params={"fields": fields}, bucket="profile")

    def media(self, media_id: str, fields: str = MEDIA_FIELDS) -> dict:
        """One media object; only the account's own (NotFound for anyone else's post)."""
        return self._read("GET", media_id, params={"fields": fields})

    def own_media(self, *, fields: str = MEDIA_FIELDS, limit: int = 25, max_pages: int | None = None) -> Iterator[dict]:
        """The account's own posts and reels, newest first."""
        owner = "me" if self.flavour == "instagram" else self.ig_user_id
        yield from self._pages(f"{owner}/media", {"fields": fields, "limit": limit}, max_pages=max_pages)

    # --- Sends ----------------------------------------------------------------------

    def send_text(self, recipient_id: str, text: str, *, human_agent: bool = False) -> SendResult:
        """Send a text (at most 1000 bytes of UTF-8, Meta's limit)."""
        return self._send(recipient_id, {"text": text}, human_agent=human_agent)

    def send_attachment(self, recipient_id: str, kind: str, url: str | None = None, *,
                        attachment_id: str | None = None, human_agent: bool = False) -> SendResult:
        """Send one image, audio, video or file by public URL (or uploaded attachment_id)."""
        if kind not in ATTACHMENT_KINDS:
            raise ValueError(f"Attachment kind must be one of {', '.join(ATTACHMENT_KINDS)}.")
        if kind == "image":
            return self.send_images(recipient_id, [url] if url else [],
                                    attachment_ids=[attachment_id] if attachment_id else None, human_agent=human_agent)
        payload = {"attachment_id": attachment_id} if attachment_id else {"url": url}
        # Audio, video and files use the singular `attachment` (images may be several).
        return self._send(recipient_id, {"attachment": {"type": kind, "payload": payload}},
                          human_agent=human_agent, media=kind in ("audio", "video"))

    def send_images(self, recipient_id: str, urls: list[str], *, attachment_ids: list[str] | None = None,
                    human_agent: bool = False) -> SendResult:
        """Send up to 10 images in one message (the plural `attachments` form)."""
        payloads = [{"url": u} for u in urls] + [{"attachment_id": a} for a in attachment_ids or []]
        if not 1 <= len(payloads) <= MAX_IMAGES:
            raise ValueError(f"Send between 1 and {MAX_IMAGES} images.")
        attachments = [{"type": "image", "payload": p} for p in payloads]
        return self._send(recipient_id, {"attachments": attachments}, human_agent=human_agent)

    def sender_action(self, recipient_id: str, action: str, payload: dict | None = None) -> dict:
        """typing_on, typing_off, mark_seen, react or unreact; always sent alone."""
        body: dict[str, Any] = {"recipient": {"id": str(recipient_id)}, "sender_action": action}
        if payload:
            body["payload"] = payload
        return self._request("POST", f"{self.owner}/messages", json_body=body, bucket="send", sending=True)

    def private_reply(self, comment_id: str, text: str) -> SendResult:
        """A DM to the author of a comment (`recipient.comment_id`): one per comment, within 7 days.

        Counted against the account's private-reply budget, shared by every process; when
        it is spent for longer than GRAPH_MAX_RETRY_WAIT_SECONDS, raises RateLimited with
        `retry_after` and sends nothing. Tried once, like every send.
        """
        self._wait_for_budget("private_reply", self.private_replies_per_hour)
        body = {"recipient": {"comment_id": str(comment_id)}, "message": {"text": text}}
        answer = self._request("POST", f"{self.owner}/messages", json_body=body, bucket="send", sending=True)
        if not answer.get("message_id"):
            raise AmbiguousSendFailure("The Send API answered without a message_id.")
        return SendResult(str(answer.get("recipient_id") or ""), str(answer["message_id"]))

    def react(self, recipient_id: str, mid: str, reaction: str = "love") -> dict:
        return self.sender_action(recipient_id, "react", {"message_id": mid, "reaction": reaction})

    def unreact(self, recipient_id: str, mid: str) -> dict:
        return self.sender_action(recipient_id, "unreact", {"message_id": mid})

    # --- Comments API ----------------------------------------------------------------

    def media_comments(self, media_id: str, *, fields: str = COMMENT_FIELDS, limit: int = 50,
                       max_pages: int | None = 1) -> Iterator[dict]:
        """A post's comments (the account's own media only), newest first."""
        yield from self._pages(f"{media_id}/comments", {"fields": fields, "limit": limit}, bucket="comments",
                               max_pages=max_pages)

    def reply_to_comment(self, comment_id: str, text: str) -> str:
        """A public reply under a comment; returns the new comment's id. Tried once (it is a write)."""
        answer = self._request("POST", f"{comment_id}/replies", params={"message": text}, bucket="comments",
                               sending=True)
        if not answer.get("id"):
            raise AmbiguousSendFailure("The Comments API answered without the reply's id.")
        return str(answer["id"])

    def hide_comment(self, comment_id: str, hidden: bool = True) -> bool:
        """Hide (or show again) a comment on the account's media."""
        answer = self._request("POST", str(comment_id), params={"hide": "true" if hidden else "false"},
                               bucket="comments")
        return bool(answer.get("success", True))

    def delete_comment(self, comment_id: str) -> bool:
        """Delete a comment on the account's media (anyone's) or one the account wrote."""
        answer = self._request("DELETE", str(comment_id), bucket="comments")
        return bool(answer.get("success", True))

    # --- Webhook subscription and tokens ---------------------------------------------

    def subscribed_fields(self) -> list[str]:
        """The webhook fields this app is subscribed to for the account (empty: not subscribed)."""
        body = self._read("GET", f"{self.owner}/subscribed_apps")
        fields: list[str] = []
        for app in body.get("data", []):
            for field in app.get("subscribed_fields", []):
                if field not in fields:
                    fields.append(field)
        return fields

    def subscribe(self, fields: tuple[str, ...] | list[str] | None = None) -> bool:
        """Subscribe the app to the account's webhook fields."""
        fields = list(fields or WEBHOOK_FIELDS[self.flavour])
        body = self._request("POST", f"{self.owner}/subscribed_apps",
                             params={"subscribed_fields": ",".join(fields)})
        return bool(body.get("success"))

    def ensure_subscribed(self, fields: tuple[str, ...] | list[str] | None = None) -> list[str]:
        """Check the subscription and restore it when fields are missing; returns the fields restored."""
        wanted = list(fields or WEBHOOK_FIELDS[self.flavour])
        have = set(self.subscribed_fields())
        missing = [f for f in wanted if f not in have]
        if missing:
            log.warning("webhook subscription of %s lacked %s; restoring", self.ig_user_id, ",".join(missing))
            self.subscribe(sorted(have | set(wanted)))
        return missing

    def refresh_token(self) -> TokenGrant:
        """Refresh a long-lived Instagram token (valid, at least 24 h old) for another 60 days."""
        body = self._request("GET", f"{self.base}/refresh_access_token",
                             params={"grant_type": "ig_refresh_token"}, token_in_query=True, retry=True)
        return _grant(body)

    def exchange_token(self, app_secret: str) -> TokenGrant:
        """Exchange this short-lived token for a long-lived one (60 days)."""
        body = self._request("GET", f"{self.base}/access_token",
                             params={"grant_type": "ig_exchange_token", "client_secret": app_secret},
                             token_in_query=True, retry=True)
        return _grant(body)

    # --- Plumbing -------------------------------------------------------------------

    def _read(self, method: str, path: str, *, params: dict | None = None, bucket: str | None = None) -> dict:
        return self._request(method, path, params=params, bucket=bucket, retry=True)

    def _send(self, recipient_id: str, message: dict, *, human_agent: bool, media: bool = False) -> SendResult:
        body: dict[str, Any] = {"recipient": {"id": str(recipient_id)}, "message": message}
        if human_agent:
            body["messaging_type"] = "MESSAGE_TAG"
            body["tag"] = "HUMAN_AGENT"
        if media:  # audio and video have their own, lower limit (10/s)
            self._wait_for_slot("send_media")
        answer = self._request("POST", f"{self.owner}/messages", json_body=body, bucket="send", sending=True)
        if not answer.get("message_id"):
            raise AmbiguousSendFailure("The Send API answered without a message_id.")
        return SendResult(str(answer.get("recipient_id") or recipient_id), str(answer["message_id"]))

    def _pages(self, path_or_url: str, params: dict | None, *, bucket: str | None = None,
               max_pages: int | None = None) -> Iterator[dict]:
        url, pages = path_or_url, 0
        while url:
            body = self._request("GET", url, params=params, bucket=bucket, retry=True)
            yield from body.get("data", [])
            pages += 1
            if max_pages is not None and pages >= max_pages:
                return
            url, params = (body.get("paging") or {}).get("next"), None

    def _url(self, path_or_url: str) -> str:
        if "://" not in path_or_url:
            return f"{self.base}/{self.version}/{path_or_url.lstrip('/')}"
        # paging.next comes from Meta's answer; follow it only on Meta's own host, and drop
        # any token in it (ours travels in the header).
        parts = urlsplit(path_or_url)
        base = urlsplit(self.base)
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            raise GraphError(f"Refusing to follow a link off the Graph host ({parts.netloc}).")
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "access_token"])
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

    def _wait_for_slot(self, bucket: str | None) -> None:
        if bucket and self.rates.get(bucket):
            ratelimit.acquire(bucket, self.ig_user_id, float(self.rates[bucket]), app=self._app, sleep=self._sleep)

    def _wait_for_budget(self, bucket: str, per_hour: float | None) -> None:
        """An hourly budget: a burst of all of it, then one call per share of the hour."""
        if not per_hour:
            return
        try:
            ratelimit.acquire(bucket, self.ig_user_id, float(per_hour) / 3600, burst=int(per_hour), app=self._app,
                              sleep=self._sleep, max_wait=self.max_retry_wait)
        except ratelimit.BudgetSpent as exc:
            raise RateLimited(f"The account's {bucket.replace('_', ' ')} budget is spent for now.",
                              retry_after=exc.retry_after) from None

    def _request(self, method: str, path_or_url: str, *, params: dict | None = None, json_body: dict | None = None,
                 bucket: str | None = None, sending: bool = False, retry: bool = False,
                 token_in_query: bool = False) -> dict:
        attempts = self.retries + 1 if retry and not sending else 1
        for attempt in range(attempts):
            try:
                self._wait_for_slot(bucket)
                return self._once(method, path_or_url, params, json_body, sending, token_in_query)
            except (Transient, RateLimited) as exc:
                if attempt + 1 >= attempts:
                    raise
                told = exc.retry_after if isinstance(exc, RateLimited) else None
                wait = told or self.backoff * 2 ** attempt
                if wait > self.max_retry_wait:
                    raise
                log.info("graph %s %s: %s; retry %d in %.1fs", method, _path_of(path_or_url), exc, attempt + 1, wait)
                self._sleep(wait)
        raise AssertionError("unreachable")

    def _once(self, method: str, path_or_url: str, params: dict | None, json_body: dict | None,
              sending: bool, token_in_query: bool) -> dict:
        url = self._url(path_or_url)
        params = dict(params or {})
        headers = {}
        if token_in_query:  # refresh/exchange take the token as a parameter (Meta's documented form)
            params["access_token"] = self._token
        else:
            headers["Authorization"] = f"Bearer {self._token}"
        path = _path_of(url)
        started = time.perf_counter()
        try:
            response = http_session().request(method, url, params=params or None, json=json_body, headers=headers,
                                              timeout=self.timeout, allow_redirects=False)
        except requests.exceptions.RequestException as exc:
            metrics.graph_request(path, method, "timeout" if isinstance(exc, requests.exceptions.Timeout)
                                  else "unreachable", time.perf_counter() - started)
            raise self._network_error(exc, sending) from None
        metrics.graph_request(path, method, response.status_code, time.perf_counter() - started)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200 and isinstance(body, dict) and "error" not in body:
            log.debug("graph %s %s -> 200", method, path)
            return body
        raise self._error(response, body, sending, method, path)

    def _network_error(self, exc: requests.exceptions.RequestException, sending: bool) -> GraphError:
        """What a call that got no answer means: safe to retry, or a send that may have left."""
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return Transient(f"Could not reach the Graph API ({type(exc).__name__}).")
        if isinstance(exc, requests.exceptions.ConnectionError):
            if sending and not _never_connected(exc):
                return AmbiguousSendFailure(f"The connection failed after the send left ({type(exc).__name__}).")
            return Transient(f"Could not reach the Graph API ({type(exc).__name__}).")
        if isinstance(exc, requests.exceptions.Timeout):
            if sending:
                return AmbiguousSendFailure(f"No answer from the Send API within {self.timeout:g}s.")
            return Transient(f"No answer from the Graph API within {self.timeout:g}s ({type(exc).__name__}).")
        return GraphError(f"Graph API request failed ({type(exc).__name__}).")

    def _error(self, response, body, sending: bool, method: str, path: str) -> GraphError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            status = response.status_code
            if status >= 500 or status == 429:
                cls = AmbiguousSendFailure if sending and status >= 500 else Transient
                exc: GraphError = cls(f"The Graph API answered HTTP {status} without an error body.",
                                      http_status=status)
            else:
                exc = GraphError(f"The Graph API answered HTTP {status} without an error body.", http_status=status)
            log.warning("graph %s %s -> HTTP %s", method, path, status)
            return exc
        code = _int(error.get("code"))
        subcode = _int(error.get("error_subcode"))
        message = str(error.get("message") or "Graph API error").replace(self._token, "[token]")
        cls = error_class(code, subcode, sending=sending)
        retry_after = retry_after_from(response.headers) if cls is RateLimited else None
        log.warning("graph %s %s -> %s %s/%s %s", method, path, response.status_code, code, subcode,
                    error.get("fbtrace_id"))
        return cls(message, code=code, subcode=subcode, error_type=error.get("type"),
                   fbtrace_id=error.get("fbtrace_id"), http_status=response.status_code, retry_after=retry_after)


def exchange_code(code: str, redirect_uri: str, *, client_id: str, client_secret: str,
                  app=None) -> AuthorizationGrant:
    """Business Login: trade the authorization code for a short-lived token (OAUTH_TOKEN_URL).

    Tried once: a code is single-use, so a retry after a lost answer could only fail.
    Answers in both shapes Meta uses (`{"data": [{...}]}` and the flat form), and errors
    in both the Graph shape and api.instagram.com's `{error_type, code, error_message}`.
    """
    app = app or current_app._get_current_object()
    url = app.config["OAUTH_TOKEN_URL"]
    form = {"client_id": client_id, "client_secret": client_secret, "grant_type": "authorization_code",
            "redirect_uri": redirect_uri, "code": code}
    try:
        response = http_session().post(url, data=form, timeout=float(app.config["GRAPH_TIMEOUT_SECONDS"]),
                                       allow_redirects=False)
    except requests.exceptions.RequestException as exc:
        raise Transient(f"Could not reach Instagram's token endpoint ({type(exc).__name__}).") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict):
        data = body.get("data")
        item = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else body
        if item.get("access_token"):
            permissions = item.get("permissions")
            if isinstance(permissions, str):
                permissions = tuple(p.strip() for p in permissions.split(",") if p.strip())
            elif isinstance(permissions, list):
                permissions = tuple(str(p) for p in permissions)
            else:
                permissions = None
            user_id = item.get("user_id")
            return AuthorizationGrant(str(item["access_token"]), str(user_id) if user_id is not None else None,
                                      permissions)
    error = body.get("error") if isinstance(body, dict) else None
    log.warning("oauth token endpoint -> HTTP %s", response.status_code)
    if isinstance(error, dict):
        code_, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
        message = str(error.get("message") or "OAuth error")
        cls = error_class(code_, subcode)
        raise cls(message.replace(client_secret, "[secret]"), code=code_, subcode=subcode,
                         error_type=error.get("type"), fbtrace_id=error.get("fbtrace_id"),
                         http_status=response.status_code)
    if isinstance(body, dict) and body.get("error_message"):
        # api.instagram.com's own shape: {"error_type": "OAuthException", "code": 400, "error_message": ...}
        raise InvalidRequest(str(body["error_message"]), error_type=body.get("error_type"),
                             http_status=response.status_code)
    if response.status_code >= 500:
        raise Transient(f"Instagram's token endpoint answered HTTP {response.status_code}.",
                        http_status=response.status_code)
    raise GraphError(f"Instagram's token endpoint answered HTTP {response.status_code} without a token.",
                     http_status=response.status_code)


def _grant(body: dict) -> TokenGrant:
    if not body.get("access_token"):
        raise GraphError("The token endpoint answered without an access_token.")
    expires = body.get("expires_in")
    return TokenGrant(str(body["access_token"]), int(expires) if expires is not None else None,
                      str(body.get("token_type") or "bearer"))


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _path_of(url: str) -> str:
    """The path alone, for logs: queries may carry tokens."""
    return urlsplit(url).path if "://" in url else url.split("?", 1)[0]


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection was never made, so a send cannot have left."""
    text = repr(exc.args)
    return "NewConnectionError" in text or "Failed to establish" in text or "NameResolutionError" in text
