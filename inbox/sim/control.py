"""Scripting the simulated world from Python: accounts and the customers who write to them.

    shop = sim.add_account("shop")
    alice = shop.add_customer("alice", name="Alice")
    sent = alice.sends_text("Is the blue one in stock?")   # Sent(mid, delivery, event)
    alice.reacts(sent.mid, "love"); alice.edits(sent.mid, "…"); alice.unsends(sent.mid)
    shop.types_in_app(alice, "Yes!")                      # the owner in the Instagram app: an echo
    alice.received                                         # what the business sent her

Every customer action stores the message in the world (so the Conversations API lists
it) and emits the webhook Meta would send. `at=` back-dates an action and
`deliver=False` writes history without a webhook. Each method named in ACTIONS is also
reachable over HTTP (`POST /_sim/customers/<igsid>/actions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from . import events
from .cdn import MIME
from .webhooks import Delivery
from .world import Account, Customer, Media, Received


@dataclass(frozen=True)
class Sent:
    """What an action produced: the message id (when it made one), the event and its delivery."""

    mid: str | None
    event: dict
    delivery: Delivery | None


def _ms(at) -> int | None:
    if at is None:
        return None
    if isinstance(at, datetime):
        return int(at.timestamp() * 1000)
    return int(float(at) * 1000)


class AccountHandle:
    """A simulated professional account."""

    def __init__(self, sim, state: Account) -> None:
        self.sim = sim
        self.state = state

    ig_user_id = property(lambda self: self.state.ig_user_id)
    username = property(lambda self: self.state.username)
    token = property(lambda self: self.state.token)
    page_id = property(lambda self: self.state.page_id)

    def __repr__(self) -> str:
        return f"<SimAccount {self.ig_user_id} @{self.username}>"

    def add_customer(self, username: str, *, name: str | None = None, igsid: str | None = None,
                     **flags) -> CustomerHandle:
        """A person who will write to this account (flags: follower_count, follows_business, …)."""
        state = self.sim.world.add_customer(self.state, username=username, name=name, igsid=igsid, **flags)
        self.sim.profile_pic_asset(state.igsid)
        return CustomerHandle(self.sim, state)

    def add_post(self, caption: str | None = None, *, media_type: str = "IMAGE",
                 media_product_type: str = "FEED", at=None) -> Media:
        """A post (or reel, media_product_type="REELS") this account owns."""
        asset = self.sim.cdn.add("image")
        at_s = _ms(at) / 1000 if at is not None else None
        return self.sim.world.add_media(owner=self.state, caption=caption, media_type=media_type,
                                        media_product_type=media_product_type, asset_id=asset, at=at_s)

    def types_in_app(self, customer: CustomerHandle, text: str, *, at=None, deliver: bool = True) -> Sent:
        """The owner writes in the Instagram app: a new message and its echo (no window applies)."""
        sim, world = self.sim, self.sim.world
        with world.lock:
            conversation = world.conversation(self.state, customer.state)
            message = world.add_message(conversation, sender_id=self.ig_user_id, recipient_id=customer.igsid,
                                        origin="app", timestamp_ms=_ms(at), text=text)
            conversation.business_replied = True
            customer.state.received.append(Received(message.mid, "app", text, (), message.timestamp_ms))
            event = events.messaging(self.ig_user_id, customer.igsid, message.timestamp_ms,
                                     message=events.message_body(message.mid, text=text, is_echo=True))
        delivery = sim.webhooks.emit(self.ig_user_id, "echo", event, strict=True) if deliver else None
        return Sent(message.mid, event, delivery)

    def comments_on(self, media: Media, text: str, *, reply_to: str | None = None, at=None,
                    deliver: bool = True) -> Sent:
        """The owner comments (or replies to a comment) in the Instagram app: an own comment's webhook."""
        world = self.sim.world
        with world.lock:
            parent = world.comments.get(reply_to) if reply_to else None
            comment = world.add_comment(media, author_id=self.ig_user_id, username=self.username, text=text,
                                        parent_id=(parent.parent_id or parent.id) if parent else None, own=True,
                                        at=_ms(at) / 1000 if at is not None else None)
        delivery = self.sim.emit_comment(comment) if deliver else None
        return Sent(comment.id, self.sim.comment_change(comment), delivery)

    def conversation_id(self, customer: CustomerHandle) -> str:
        return self.sim.world.conversation(self.state, customer.state).id

    # --- Tokens, subscription, settings ----------------------------------------------

    def expire_token(self) -> None:
        """The token passes its expiry: calls answer 190/463."""
        with self.sim.world.lock:
            self.state.token_expires_at = self.sim.clock.now() - 1

    def revoke_token(self) -> None:
        """The owner changed their password: calls answer 190/460."""
        with self.sim.world.lock:
            for token in list(self.state.old_tokens):
                self.sim.world.tokens.pop(token, None)
            self.state.old_tokens.clear()
            self.state.token_revoked = True

    def age_token(self, seconds: float) -> None:
        """Pretend the token was issued `seconds` earlier (refresh needs 24 hours)."""
        with self.sim.world.lock:
            self.state.token_created_at -= seconds

    def unsubscribe(self) -> None:
        """Meta dropped the app's webhook subscription for this account."""
        with self.sim.world.lock:
            self.state.subscribed_fields.clear()

    @property
    def subscribed_fields(self) -> set[str]:
        with self.sim.world.lock:
            return set(self.state.subscribed_fields)

    def set(self, **values) -> None:
        """Change account flags: dm_access, human_agent, username, name."""
        allowed = {"dm_access", "human_agent", "username", "name"}
        with self.sim.world.lock:
            for key, value in values.items():
                if key not in allowed:
                    raise ValueError(f"Unknown account setting {key!r}.")
                setattr(self.state, key, value)


class CustomerHandle:
    """A customer of one account, and everything they can do in Instagram."""

    def __init__(self, sim, state: Customer) -> None:
        self.sim = sim
        self.state = state

    igsid = property(lambda self: self.state.igsid)
    username = property(lambda self: self.state.username)
    name = property(lambda self: self.state.name)

    def __repr__(self) -> str:
        return f"<SimCustomer {self.igsid} @{self.username}>"

    @property
    def account(self) -> Account:
        return self.sim.world.accounts[self.state.account_id]

    @property
    def received(self) -> list[Received]:
        """Everything the business sent this customer (Send API and the Instagram app), oldest first."""
        with self.sim.world.lock:
            return list(self.state.received)

    @property
    def received_texts(self) -> list[str]:
        return [r.text for r in self.received if r.text is not None]

    @property
    def sender_actions(self) -> list[dict]:
        """Sender actions the business sent (typing, seen, reactions)."""
        with self.sim.world.lock:
            return list(self.state.actions)

    def set(self, **values) -> None:
        """Change profile or flags: name, username, follower_count, follows_business,
        business_follows, is_verified, available (False: 551 for sends and profile)."""
        allowed = {"name", "username", "follower_count", "follows_business", "business_follows", "is_verified",
                   "available"}
        with self.sim.world.lock:
            for key, value in values.items():
                if key not in allowed:
                    raise ValueError(f"Unknown customer setting {key!r}.")
                setattr(self.state, key, value)

    # --- Plumbing -----------------------------------------------------------------------

    def _emit(self, kind: str, event: dict, deliver: bool) -> Delivery | None:
        if not deliver:
            return None
        return self.sim.webhooks.emit(self.state.account_id, kind, event, strict=True)

    def _attachment(self, kind: str, asset_kind: str | None = None, ttl: float | None = None,
                    **payload) -> tuple[dict, str]:
        asset = self.sim.cdn.add(asset_kind or (kind if kind in MIME else "image"))
        url = self.sim.cdn.attachment_url(asset, ttl or self.sim.settings.attachment_url_ttl)
        return {"type": kind, "payload": {"url": url, **payload}}, asset

    def _message(self, *, text: str | None = None, attachments: list[tuple[dict, str | None]] | None = None,
                 reply_to: dict | None = None, quick_reply: dict | None = None, referral: dict | None = None,
                 is_unsupported: bool = False, story: dict | None = None, at=None, deliver: bool = True) -> Sent:
        world = self.sim.world
        with world.lock:
            account = self.account
            conversation = world.conversation(account, self.state)
            pairs = attachments or []
            message = world.add_message(
                conversation, sender_id=self.igsid, recipient_id=account.ig_user_id, origin="customer",
                timestamp_ms=_ms(at), text=text, attachments=[a for a, _ in pairs],
                asset_ids=[asset for _, asset in pairs], reply_to=reply_to, quick_reply=quick_reply,
                referral=referral, is_unsupported=is_unsupported, story=story)
            self._opened(message.timestamp_ms)
            body = events.message_body(message.mid, text=text, attachments=[a for a, _ in pairs] or None,
                                       reply_to=reply_to, quick_reply=quick_reply, referral=referral,
                                       is_unsupported=is_unsupported)
            event = events.messaging(self.igsid, account.ig_user_id, message.timestamp_ms, message=body)
        return Sent(message.mid, event, self._emit("message", event, deliver))

    def _opened(self, ts_ms: int) -> None:
        """The customer wrote: consent for the profile API, and the 24-hour window opens."""
        self.state.has_written = True
        if self.state.last_customer_ts_ms is None or ts_ms > self.state.last_customer_ts_ms:
            self.state.last_customer_ts_ms = ts_ms

    def _simple(self, kind: str, body_key: str, body: dict, *, at=None, deliver: bool = True) -> Sent:
        account = self.account
        ts = _ms(at) or self.sim.clock.now_ms()
        event = events.messaging(self.igsid, account.ig_user_id, ts, **{body_key: body})
        return Sent(body.get("mid"), event, self._emit(kind, event, deliver))

    def _find(self, mid: str):
        with self.sim.world.lock:
            message = self.sim.world.messages.get(mid)
            conversation = self.sim.world.conversation(self.account, self.state)
            if message is None or message.conversation_id != conversation.id:
                raise ValueError(f"No message {mid} in this customer's conversation.")
            return message

    # --- Messages -------------------------------------------------------------------------

    def sends_text(self, text: str, *, at=None, deliver: bool = True) -> Sent:
        return self._message(text=text, at=at, deliver=deliver)

    def sends_attachment(self, kind: str = "image", *, count: int = 1, text: str | None = None, at=None,
                         deliver: bool = True) -> Sent:
        """image, video, audio or file (count of them in one message)."""
        if kind not in ("image", "video", "audio", "file"):
            raise ValueError("kind is image, video, audio or file")
        return self._message(text=text, attachments=[self._attachment(kind) for _ in range(count)], at=at,
                             deliver=deliver)

    def sends_sticker(self, *, at=None, deliver: bool = True) -> Sent:
        """A sticker arrives as an image."""
        return self._message(attachments=[self._attachment("image", sticker_id=369239263222822)], at=at,
                             deliver=deliver)

    def sends_share(self, *, at=None, deliver: bool = True) -> Sent:
        """The legacy `share` attachment: only the shared media's URL."""
        return self._message(attachments=[self._attachment("share", "image")], at=at, deliver=deliver)

    def shares_post(self, media: Media | None = None, *, key: str = "ig_post_media_id", caption: str | None = None,
                    text: str | None = None, at=None, deliver: bool = True) -> Sent:
        """An `ig_post` share; key is "ig_post_media_id" (Instagram traffic) or "id" (Messenger docs).

        Without media, a post of another account (its caption given) is made up.
        """
        if key not in ("ig_post_media_id", "id"):
            raise ValueError('key is "ig_post_media_id" or "id"')
        media = media or self.sim.add_foreign_post(caption=caption)
        title = media.caption if caption is None else caption
        attachment, asset = self._attachment("ig_post", "image", title=title or "", **{key: media.id})
        return self._message(text=text, attachments=[(attachment, asset)], at=at, deliver=deliver)

    def shares_reel(self, media: Media | None = None, *, kind: str = "ig_reel", caption: str | None = None,
                    at=None, deliver: bool = True) -> Sent:
        """An `ig_reel` (or `reel`) share with reel_video_id and the caption as title."""
        if kind not in ("ig_reel", "reel"):
            raise ValueError('kind is "ig_reel" or "reel"')
        media = media or self.sim.add_foreign_post(caption=caption, media_type="VIDEO", media_product_type="REELS")
        title = media.caption if caption is None else caption
        attachment, asset = self._attachment(kind, "video", title=title or "", reel_video_id=media.id)
        return self._message(attachments=[(attachment, asset)], at=at, deliver=deliver)

    def sends_ig_story(self, *, at=None, deliver: bool = True) -> Sent:
        """An `ig_story` attachment: the link is under story_media_url, not url (observed)."""
        asset = self.sim.cdn.add("image")
        story_id = self.sim.world.new_numeric_id("180", 17)
        url = self.sim.cdn.attachment_url(asset, self.sim.settings.story_ttl)
        attachment = {"type": "ig_story", "payload": {"story_media_id": story_id, "story_media_url": url}}
        return self._message(attachments=[(attachment, asset)], at=at, deliver=deliver)

    def sends_ephemeral(self, *, at=None, deliver: bool = True) -> Sent:
        """View-once media: type `ephemeral`, no payload."""
        return self._message(attachments=[({"type": "ephemeral"}, None)], at=at, deliver=deliver)

    def sends_unsupported(self, *, at=None, deliver: bool = True) -> Sent:
        """Media the API does not support: is_unsupported, no content."""
        return self._message(is_unsupported=True, at=at, deliver=deliver)

    def sends_unknown(self, type_name: str = "story_share_v2", payload: dict | None = None, *, at=None,
                      deliver: bool = True) -> Sent:
        """An attachment type nobody documented yet."""
        attachment = {"type": type_name, "payload": payload if payload is not None else {"opaque": "value"}}
        return self._message(attachments=[(attachment, None)], at=at, deliver=deliver)

    def sends_fallback(self, url: str = "https://example.com/page", title: str = "A link", *, text: str | None = None,
                       at=None, deliver: bool = True) -> Sent:
        """A link preview (`fallback`), usually beside the text that carried the link."""
        attachment = {"type": "fallback", "payload": {"url": url, "title": title}}
        return self._message(text=text if text is not None else url, attachments=[(attachment, None)], at=at,
                             deliver=deliver)

    def sends_product_template(self, product_id: str = "5551234", *, retailer_id: str = "SKU-1",
                               title: str = "A product", at=None, deliver: bool = True) -> Sent:
        """A product `template` attachment (catalogue product card)."""
        asset = self.sim.cdn.add("image")
        element = {"id": product_id, "retailer_id": retailer_id, "title": title, "subtitle": "",
                   "image_url": self.sim.cdn.attachment_url(asset, self.sim.settings.attachment_url_ttl)}
        attachment = {"type": "template", "payload": {"product": {"elements": [element]}}}
        return self._message(attachments=[(attachment, asset)], at=at, deliver=deliver)

    def mentions_in_story(self, *, at=None, deliver: bool = True) -> Sent:
        """The customer mentioned the business in their story (its URL dies with the story)."""
        asset, story_id, expires = self._story()
        url = self.sim.cdn.attachment_url(asset, expires - self.sim.clock.now())
        return self._message(attachments=[({"type": "story_mention", "payload": {"url": url}}, asset)],
                             story={"mention": {"id": story_id, "asset_id": asset, "expires_at": expires}},
                             at=at, deliver=deliver)

    def replies_to_story(self, text: str, *, at=None, deliver: bool = True) -> Sent:
        """The customer answered one of the business's stories."""
        asset, story_id, expires = self._story()
        url = self.sim.cdn.attachment_url(asset, expires - self.sim.clock.now())
        return self._message(text=text, reply_to={"story": {"url": url, "id": story_id}},
                             story={"reply_to": {"id": story_id, "asset_id": asset, "expires_at": expires}},
                             at=at, deliver=deliver)

    def _story(self) -> tuple[str, str, float]:
        asset = self.sim.cdn.add("image")
        return asset, self.sim.world.new_numeric_id("180", 17), self.sim.clock.now() + self.sim.settings.story_ttl

    def replies_to(self, mid: str, text: str, *, at=None, deliver: bool = True) -> Sent:
        """An inline reply to one message of the thread."""
        self._find(mid)
        return self._message(text=text, reply_to={"mid": mid}, at=at, deliver=deliver)

    def taps_quick_reply(self, text: str, payload: str, *, at=None, deliver: bool = True) -> Sent:
        return self._message(text=text, quick_reply={"payload": payload}, at=at, deliver=deliver)

    def clicks_ad(self, text: str = "Hi! I saw your ad.", *, ad_id: str | None = None, post: Media | str | None = None,
                  title: str = "Summer sale", ref: str | None = None, product_id: str | None = None,
                  video: bool = False, at=None, deliver: bool = True) -> Sent:
        """A message sent from a click-to-message ad: referral with ads_context_data.post_id."""
        post_id = post.id if isinstance(post, Media) else (post or self.sim.world.new_numeric_id("179", 17))
        asset = self.sim.cdn.add("image")
        url = self.sim.cdn.attachment_url(asset, self.sim.settings.attachment_url_ttl)
        context = {"ad_title": title, "post_id": post_id, "flow_id": self.sim.world.new_numeric_id("9", 15)}
        context["video_url" if video else "photo_url"] = url
        if product_id:
            context["product_id"] = product_id
        referral = {"ad_id": ad_id or self.sim.world.new_numeric_id("2385", 17), "source": "ADS",
                    "type": "OPEN_THREAD", "ads_context_data": context}
        if ref:
            referral = {"ref": ref, **referral}
        return self._message(text=text, referral=referral, at=at, deliver=deliver)

    def asks_about_product(self, product_id: str, text: str = "Is this available?", *, at=None,
                           deliver: bool = True) -> Sent:
        """A message from an Instagram Shop product page: referral.product.id."""
        return self._message(text=text, referral={"product": {"id": product_id}}, at=at, deliver=deliver)

    # --- Events about messages ---------------------------------------------------------------

    def reacts(self, mid: str, reaction: str = "love", *, at=None, deliver: bool = True) -> Sent:
        """React to a message (one reaction per person and message; a new one replaces it)."""
        with self.sim.world.lock:
            self._find(mid).reactions[self.igsid] = reaction
        return self._simple("reaction", "reaction", events.reaction_body(mid, "react", reaction), at=at,
                            deliver=deliver)

    def unreacts(self, mid: str, *, at=None, deliver: bool = True) -> Sent:
        with self.sim.world.lock:
            self._find(mid).reactions.pop(self.igsid, None)
        return self._simple("reaction", "reaction", events.reaction_body(mid, "unreact"), at=at, deliver=deliver)

    def sees(self, mid: str | None = None, *, at=None, deliver: bool = True) -> Sent:
        """messaging_seen for one message (default: the business's latest)."""
        if mid is None:
            with self.sim.world.lock:
                conversation = self.sim.world.conversation(self.account, self.state)
                mine = [m for m in conversation.visible() if m.sender_id != self.igsid]
                if not mine:
                    raise ValueError("The business has sent nothing to see.")
                mid = mine[0].mid
        else:
            self._find(mid)
        return self._simple("read", "read", {"mid": mid}, at=at, deliver=deliver)

    def edits(self, mid: str, text: str, *, at=None, deliver: bool = True) -> Sent:
        """Edit one of the customer's messages (message_edit with num_edit counting up)."""
        with self.sim.world.lock:
            message = self._find(mid)
            if message.sender_id != self.igsid:
                raise ValueError("A customer edits only their own messages.")
            message.num_edit += 1
            message.text = text
            body = {"mid": mid, "text": text, "num_edit": message.num_edit}
        return self._simple("edit", "message_edit", body, at=at, deliver=deliver)

    def unsends(self, mid: str, *, at=None, deliver: bool = True) -> Sent:
        """Unsend a message: a `message` with is_deleted and the same mid."""
        with self.sim.world.lock:
            message = self._find(mid)
            if message.sender_id != self.igsid:
                raise ValueError("A customer unsends only their own messages.")
            message.deleted = True
        return self._simple("message", "message", events.message_body(mid, is_deleted=True), at=at, deliver=deliver)

    def taps_postback(self, title: str, payload: str, *, at=None, deliver: bool = True) -> Sent:
        """An icebreaker or button tap (it opens the window and gives consent, like a message)."""
        world = self.sim.world
        mid = world.new_mid()
        ts = _ms(at) or self.sim.clock.now_ms()
        with world.lock:
            self._opened(ts)
        event = events.messaging(self.igsid, self.state.account_id, ts,
                                 postback={"mid": mid, "title": title, "payload": payload})
        return Sent(mid, event, self._emit("postback", event, deliver))

    # --- Comments (they give no consent for the profile API and open no messaging window) ------

    def comments_on(self, media: Media, text: str, *, reply_to: str | None = None, live: bool = False, at=None,
                    deliver: bool = True) -> Sent:
        """Comment on one of the account's posts, or reply to a comment there (`reply_to`: its id)."""
        world = self.sim.world
        with world.lock:
            if media.owner_id != self.state.account_id:
                raise ValueError("A customer comments on the posts of the account they belong to.")
            parent = world.comments.get(reply_to) if reply_to else None
            if reply_to and (parent is None or parent.media_id != media.id):
                raise ValueError(f"No comment {reply_to} on this post.")
            comment = world.add_comment(media, author_id=self.igsid, username=self.username, text=text,
                                        parent_id=(parent.parent_id or parent.id) if parent else None, live=live,
                                        at=_ms(at) / 1000 if at is not None else None)
        delivery = self.sim.emit_comment(comment) if deliver else None
        return Sent(comment.id, self.sim.comment_change(comment), delivery)

    def _own_comment(self, comment_id: str):
        comment = self.sim.world.comments.get(comment_id)
        if comment is None or comment.author_id != self.igsid:
            raise ValueError(f"No comment {comment_id} by this customer.")
        return comment

    def edits_comment(self, comment_id: str, text: str, *, deliver: bool = True) -> Sent:
        """Edit one of their comments: the same id with the new text."""
        with self.sim.world.lock:
            comment = self._own_comment(comment_id)
            comment.text = text
        delivery = self.sim.emit_comment(comment, verb="edited") if deliver else None
        return Sent(comment.id, self.sim.comment_change(comment, verb="edited"), delivery)

    def deletes_comment(self, comment_id: str, *, deliver: bool = True) -> Sent:
        """Delete one of their comments."""
        with self.sim.world.lock:
            comment = self._own_comment(comment_id)
            comment.deleted = True
        delivery = self.sim.emit_comment(comment, verb="remove") if deliver else None
        return Sent(comment.id, self.sim.comment_change(comment, verb="remove"), delivery)

    def follows_ig_me_link(self, ref: str, *, source: str = "IGME_LINK", at=None, deliver: bool = True) -> Sent:
        """An ig.me link with a ref, into an existing conversation (messaging_referral)."""
        return self._simple("referral", "referral", {"ref": ref, "source": source, "type": "OPEN_THREAD"}, at=at,
                            deliver=deliver)


# Customer actions the HTTP control API may call, by name.
ACTIONS = {
    "sends_text", "sends_attachment", "sends_sticker", "sends_share", "shares_post", "shares_reel", "sends_ig_story",
    "sends_ephemeral", "sends_unsupported", "sends_unknown", "sends_fallback", "sends_product_template",
    "mentions_in_story", "replies_to_story", "replies_to", "taps_quick_reply", "clicks_ad", "asks_about_product",
    "reacts", "unreacts", "sees", "edits", "unsends", "taps_postback", "follows_ig_me_link",
    "comments_on", "edits_comment", "deletes_comment",
}
