"""The simulator's knobs: Meta's limits and lifetimes, and switchable faults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

DAY = 24 * 3600


@dataclass
class Limits:
    """Per-account calls per second; None: no limit."""

    conversations: float | None = 2.0
    send: float | None = 100.0
    send_media: float | None = 10.0  # audio and video sends
    profile: float | None = None  # Meta publishes no per-second limit for profiles
    comments: float | None = None  # Comments API (Meta: usage-based; set one to make it refuse)
    private_replies_per_hour: float | None = 750  # Meta's budget for private replies to post and reel comments


@dataclass
class Faults:
    """Misbehaviours to switch on; all off by default."""

    latency: float = 0.0  # seconds added to every Graph answer (each request sleeps in its own thread)
    latency_jitter: float = 0.0  # plus up to this much, at random
    cdn_latency: float = 0.0  # seconds added to every CDN (media file) answer
    duplicate_rate: float = 0.0  # share of webhook POSTs sent twice (1.0: every one)
    echo_before_response: bool = False  # the echo is delivered before the Send API answers
    send_ambiguous: int = 0  # the next N sends succeed but answer 1/1357046
    # Waits between webhook attempts after a non-200 (Meta: at once, then less and less
    # often for 36 hours). Empty: no retries.
    retry_delays: tuple[float, ...] = ()
    out_of_order: bool = False  # background delivery: each gathered batch goes newest first
    batch_window: float = 0.0  # background delivery: gather events this long into one POST


@dataclass
class Settings:
    """Everything the simulator can be told; `Settings(**values)` or `Settings.from_dict`."""

    app_id: str = "1234567890123456"
    app_secret: str = "sim-app-secret"
    verify_token: str = "sim-verify-token"
    callback_url: str | None = None
    sync: bool = True  # deliver webhooks in the calling thread (tests); False: background threads
    delivery_workers: int = 1
    webhook_timeout: float = 20.0  # Meta's documented response timeout
    retry_horizon: float = 36 * 3600  # give up on an event after this long
    disable_after: float | None = 3600.0  # unsubscribe the account after this long of continuous failure
    attachment_url_ttl: float = 3 * DAY  # lookaside CDN links in webhooks and the Conversations API
    profile_pic_ttl: float = 3 * DAY  # profile_pic and media_url links
    story_ttl: float = DAY  # stories vanish after a day
    token_ttl: float = 60 * DAY  # long-lived tokens
    # What the person in the authorization window does: "allow", or "deny" (Cancel:
    # Meta sends them back with error=access_denied).
    authorize_answer: str = "allow"
    window: float = DAY  # the standard messaging window
    human_agent_window: float = 7 * DAY
    private_reply_window: float = 7 * DAY  # a comment can get its one private reply this long
    usage_headers: bool = False  # X-Business-Use-Case-Usage on every rate-limited call
    seed: int | None = None
    limits: Limits = field(default_factory=Limits)
    faults: Faults = field(default_factory=Faults)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["faults"]["retry_delays"] = list(self.faults.retry_delays)
        return data

    def update(self, values: dict) -> None:
        """Change settings in place from plain values (the HTTP control API's PATCH)."""
        for name, value in values.items():
            if name == "limits":
                _update(self.limits, value)
            elif name == "faults":
                _update(self.faults, value)
            elif name in {f.name for f in fields(self)}:
                setattr(self, name, value)
            else:
                raise ValueError(f"Unknown setting {name!r}.")


def _update(target, values: dict) -> None:
    known = {f.name for f in fields(target)}
    for name, value in values.items():
        if name not in known:
            raise ValueError(f"Unknown setting {name!r}.")
        if name == "retry_delays":
            value = tuple(float(v) for v in value)
        setattr(target, name, value)
