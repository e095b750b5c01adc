"""Meta's webhook sender: the verification handshake, signed POSTs, retries and faults.

Nothing is delivered before the callback URL has passed the GET handshake (as the App
Dashboard insists). Bodies are encoded the way Meta encodes them and signed over exactly
the bytes sent. In sync mode (tests) a POST happens in the thread that caused the event,
so the caller knows what the receiver answered; otherwise worker threads deliver.
Retries after a non-200 run on a scheduler thread either way. `settle()` waits until
nothing is in flight.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field

import requests

from . import events

log = logging.getLogger(__name__)
MAX_BATCH = 1000  # Meta's largest batch


class WebhookRefused(RuntimeError):
    """An event could not be delivered at all (no verified callback URL)."""


@dataclass
class Attempt:
    at: float
    status: int | None
    response: str
    error: str | None = None


@dataclass(eq=False)
class Delivery:
    """One POST body and what became of it."""

    id: int
    body: bytes
    events: list[dict]
    account_ids: tuple[str, ...]
    created_at: float
    state: str = "pending"  # pending, delivered, retrying, failed, refused, undelivered
    reason: str | None = None
    duplicate_of: int | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == "delivered"

    @property
    def status(self) -> int | None:
        """The receiver's HTTP status on the last attempt."""
        return self.attempts[-1].status if self.attempts else None

    @property
    def response(self) -> str:
        return self.attempts[-1].response if self.attempts else ""

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


@dataclass
class Handshake:
    ok: bool
    status: int | None
    challenge: str
    response: str
    error: str | None = None


@dataclass
class Pending:
    """An event waiting to be put in a POST."""

    account_id: str
    event: dict
    time_ms: int
    key: str = "messaging"  # or "changes" (comments, mentions)


class Held:
    """What `hold()` collected; `deliveries` is filled when the block ends."""

    def __init__(self) -> None:
        self.events: list[Pending] = []
        self.deliveries: list[Delivery] = []


class WebhookSender:
    def __init__(self, sim) -> None:
        self.sim = sim
        self.verified = False
        # Bounded, so a long-running demo does not grow without end.
        self.log: deque[Delivery] = deque(maxlen=20_000)
        self.handshakes: deque[Handshake] = deque(maxlen=100)
        self.dropped: deque[tuple[str, str, dict]] = deque(maxlen=1_000)  # (account, reason, event) never sent
        self._cv = threading.Condition()
        self._busy = 0
        self._queue: deque = deque()
        self._retries: list = []
        self._held: Held | None = None
        self._ids = itertools.count(1)
        self._failing_since: dict[str, float] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = False
        self._http = requests.Session()

    @property
    def settings(self):
        return self.sim.settings

    # --- Configuration and the handshake ---------------------------------------------

    def configure(self, callback_url: str | None = None, *, verify_token: str | None = None,
                  app_secret: str | None = None) -> None:
        """Set the callback URL, verify token and signing secret; a new URL or token must verify again."""
        s = self.settings
        if callback_url is not None and callback_url != s.callback_url:
            s.callback_url, self.verified = callback_url, False
        if verify_token is not None and verify_token != s.verify_token:
            s.verify_token, self.verified = verify_token, False
        if app_secret is not None:
            s.app_secret = app_secret

    def verify(self) -> Handshake:
        """GET callback?hub.mode=subscribe&hub.challenge=…&hub.verify_token=…; passes on a 200 echoing the challenge."""
        url = self.settings.callback_url
        challenge = str(self.sim.world.rng.randrange(10 ** 9, 10 ** 10))
        if not url:
            result = Handshake(False, None, challenge, "", "no callback URL configured")
        else:
            params = {"hub.mode": "subscribe", "hub.challenge": challenge,
                      "hub.verify_token": self.settings.verify_token}
            try:
                r = self._http.get(url, params=params, timeout=self.settings.webhook_timeout, allow_redirects=False)
                result = Handshake(r.status_code == 200 and r.text.strip() == challenge, r.status_code, challenge,
                                   r.text[:500])
            except requests.RequestException as exc:
                result = Handshake(False, None, challenge, "", type(exc).__name__)
        self.verified = result.ok
        self.handshakes.append(result)
        return result

    # --- Emitting events ---------------------------------------------------------------

    def subscribed(self, account_id: str, kind: str) -> bool:
        account = self.sim.world.accounts.get(account_id)
        return account is not None and any(f in account.subscribed_fields for f in events.FIELDS_FOR[kind])

    def emit(self, account_id: str, kind: str, event: dict, *, strict: bool = False,
             key: str = "messaging") -> Delivery | None:
        """Send one messaging event: now (sync), to the workers, or into the open `hold()`.

        Returns the Delivery in sync mode. With strict, an event that cannot be delivered
        because the handshake has not passed raises WebhookRefused.
        """
        if not self.subscribed(account_id, kind):
            self.dropped.append((account_id, "not subscribed", event))
            return None
        pending = Pending(account_id, event, self.sim.clock.now_ms(), key)
        with self._cv:
            if self._held is not None:
                self._held.events.append(pending)
                return None
            if not self.settings.sync:
                self._busy += 1
                self._queue.append(pending)
                self._ensure_workers()
                self._cv.notify_all()
                return None
        delivery = self._build([pending])
        self._attempt(delivery)
        if strict and delivery.state in ("refused", "undelivered") and self.settings.callback_url:
            raise WebhookRefused(delivery.reason or "not delivered")
        return delivery

    def later(self):
        """Reserve a delivery to make after the current HTTP answer; call the result to emit."""
        with self._cv:
            self._busy += 1

        def fire(account_id: str, kind: str, event: dict, key: str = "messaging") -> None:
            try:
                self.emit(account_id, kind, event, key=key)
            except Exception:  # runs after the response: nobody to tell but the log
                log.exception("deferred webhook failed")
            finally:
                self._done(1)
        return fire

    @contextmanager
    def hold(self, *, batch: bool = False, order: str = "sent", pack: bool = False):
        """Collect every event of the block, then deliver them: in one POST (batch), newest
        first (order="reversed") or shuffled; with pack, one entry per account holds
        several messaging events (Meta documents one, parsers should cope)."""
        if order not in ("sent", "reversed", "shuffled"):
            raise ValueError("order is sent, reversed or shuffled")
        held = Held()
        with self._cv:
            if self._held is not None:
                raise RuntimeError("hold() does not nest")
            self._held = held
        try:
            yield held
        finally:
            with self._cv:
                self._held = None
            items = list(held.events)
            if order == "reversed":
                items.reverse()
            elif order == "shuffled":
                self.sim.world.rng.shuffle(items)
            if not items:
                return
            if batch:
                groups = [items[i:i + MAX_BATCH] for i in range(0, len(items), MAX_BATCH)]
            else:
                groups = [[p] for p in items]
            held.deliveries = [self._build(group, pack=pack) for group in groups]
            if self.settings.sync:
                for delivery in held.deliveries:
                    self._attempt(delivery)
            else:
                with self._cv:
                    self._busy += len(held.deliveries)
                    self._queue.extend(held.deliveries)
                    self._ensure_workers()
                    self._cv.notify_all()

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no delivery, deferred echo or retry is pending."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._busy} webhook deliveries still pending after {timeout}s")
                self._cv.wait(left)

    # --- Building and sending POSTs -----------------------------------------------------

    def _build(self, items: list[Pending], *, pack: bool = False) -> Delivery:
        entries: list[dict] = []
        if pack:
            by_account: dict[tuple[str, str], dict] = {}
            for p in items:
                if (p.account_id, p.key) not in by_account:
                    by_account[(p.account_id, p.key)] = events.entry(p.account_id, p.time_ms, [], p.key)
                    entries.append(by_account[(p.account_id, p.key)])
                by_account[(p.account_id, p.key)][p.key].append(p.event)
        else:
            entries = [events.entry(p.account_id, p.time_ms, [p.event], p.key) for p in items]
        body = events.encode(events.envelope(entries))
        delivery = Delivery(next(self._ids), body, [p.event for p in items],
                            tuple(dict.fromkeys(p.account_id for p in items)), self.sim.clock.now())
        with self._cv:
            self.log.append(delivery)
        return delivery

    def _post(self, delivery: Delivery) -> Attempt:
        headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua",
                   **events.signature_headers(delivery.body, self.settings.app_secret)}
        try:
            r = self._http.post(self.settings.callback_url, data=delivery.body, headers=headers,
                                timeout=self.settings.webhook_timeout, allow_redirects=False)
            attempt = Attempt(self.sim.clock.now(), r.status_code, r.text[:2000])
        except requests.RequestException as exc:
            attempt = Attempt(self.sim.clock.now(), None, "", type(exc).__name__)
        delivery.attempts.append(attempt)
        return attempt

    def _attempt(self, delivery: Delivery, *, duplicates: bool = True) -> None:
        if not self.settings.callback_url:
            delivery.state, delivery.reason = "undelivered", "no callback URL configured"
            return
        if not self.verified:
            delivery.state, delivery.reason = "refused", "the callback URL has not passed the verification handshake"
            return
        attempt = self._post(delivery)
        if attempt.status == 200:
            delivery.state, delivery.reason = "delivered", None
            for account_id in delivery.account_ids:
                self._failing_since.pop(account_id, None)
            rate = self.settings.faults.duplicate_rate
            if duplicates and rate and self.sim.world.rng.random() < rate:
                copy = Delivery(next(self._ids), delivery.body, delivery.events, delivery.account_ids,
                                self.sim.clock.now(), duplicate_of=delivery.id)
                with self._cv:
                    self.log.append(copy)
                self._attempt(copy, duplicates=False)
            return
        now = self.sim.clock.now()
        disable_after = self.settings.disable_after
        for account_id in delivery.account_ids:
            since = self._failing_since.setdefault(account_id, now)
            if disable_after is not None and now - since >= disable_after:
                # Meta unsubscribes the app after a long failure; someone must subscribe again.
                with self.sim.world.lock:
                    account = self.sim.world.accounts.get(account_id)
                    if account is not None:
                        account.subscribed_fields.clear()
                self._failing_since.pop(account_id, None)
                delivery.state, delivery.reason = "failed", "the subscription was disabled after continuous failures"
                return
        delays = self.settings.faults.retry_delays
        tries = len(delivery.attempts)
        if tries <= len(delays) and now - delivery.created_at < self.settings.retry_horizon:
            delivery.state = "retrying"
            self._schedule(delivery, delays[tries - 1])
        else:
            delivery.state = "failed"
            delivery.reason = f"HTTP {attempt.status}" if attempt.status else attempt.error

    def _schedule(self, delivery: Delivery, delay: float) -> None:
        with self._cv:
            self._busy += 1
            heapq.heappush(self._retries, (time.monotonic() + delay, delivery.id, delivery))
            self._ensure_workers()
            self._cv.notify_all()

    def _done(self, n: int) -> None:
        with self._cv:
            self._busy -= n
            self._cv.notify_all()

    # --- Threads ------------------------------------------------------------------------

    def _ensure_workers(self) -> None:
        """Start the retry scheduler and (background mode) the delivery workers; caller holds _cv."""
        if self._stopping:
            return
        names = ["retries"]
        if not self.settings.sync:
            names += [f"deliver-{i}" for i in range(max(1, self.settings.delivery_workers))]
        for name in names:
            if name in self._threads:
                continue
            target = self._retry_loop if name == "retries" else self._deliver_loop
            thread = threading.Thread(target=target, name=f"sim-webhooks-{name}", daemon=True)
            self._threads[name] = thread
            thread.start()

    def _retry_loop(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and (not self._retries or self._retries[0][0] > time.monotonic()):
                    self._cv.wait(self._retries[0][0] - time.monotonic() if self._retries else None)
                if self._stopping:
                    return
                _, _, delivery = heapq.heappop(self._retries)
            try:
                self._attempt(delivery)
            finally:
                self._done(1)

    def _deliver_loop(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and not self._queue:
                    self._cv.wait()
                if self._stopping:
                    return
                first = self._queue.popleft()
            if isinstance(first, Delivery):
                try:
                    self._attempt(first)
                finally:
                    self._done(1)
                continue
            faults = self.settings.faults
            if faults.batch_window:
                time.sleep(faults.batch_window)
            items = [first]
            if faults.batch_window or faults.out_of_order:
                with self._cv:
                    while self._queue and isinstance(self._queue[0], Pending) and len(items) < MAX_BATCH:
                        items.append(self._queue.popleft())
            if faults.out_of_order:
                items.reverse()
            groups = [items] if faults.batch_window else [[p] for p in items]
            try:
                for group in groups:
                    self._attempt(self._build(group))
            finally:
                self._done(len(items))

    def close(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        for thread in self._threads.values():
            thread.join(timeout=5)
        self._http.close()
