"""Configuration: defaults, then instance/config.py, then the environment, then the test mapping."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet


class Defaults:
    """Built-in defaults; every value can be overridden by a later layer."""

    INBOX_ENV = "development"
    SECRET_KEY: str | None = None
    DATABASE_URL: str | None = None  # None: a SQLite file under instance/
    REDIS_URL: str | None = None  # None: an embedded Redis under instance/
    # Prefix for every Redis key and RQ queue name, so several deployments (or test
    # runs) can share one Redis without seeing each other's data.
    REDIS_NAMESPACE = "inbox"
    META_APP_SECRET: str | None = None
    # The Instagram app secret may sign Business Login webhooks instead of the Meta
    # app secret; either is accepted when both are configured.
    META_INSTAGRAM_APP_SECRET: str | None = None
    META_VERIFY_TOKEN: str | None = None
    META_APP_ID: str | None = None
    META_INSTAGRAM_APP_ID: str | None = None
    GRAPH_API_BASE = "https://graph.instagram.com"
    GRAPH_API_VERSION = "v24.0"
    GRAPH_API_FLAVOUR = "instagram"  # or "facebook" (Page-based Messenger Platform)
    GRAPH_FACEBOOK_API_BASE = "https://graph.facebook.com"  # accounts with api_flavour "facebook"
    OAUTH_AUTHORIZE_URL = "https://www.instagram.com/oauth/authorize"
    OAUTH_TOKEN_URL = "https://api.instagram.com/oauth/access_token"
    TOKEN_ENCRYPTION_KEY: str | None = None
    MEDIA_ROOT: str | None = None  # None: instance/media
    # Hosts media may be fetched from (suffix match on a leading "*.").
    MEDIA_ALLOWED_HOSTS = ["lookaside.fbsbx.com", "*.fbcdn.net", "*.cdninstagram.com"]
    MEDIA_MAX_BYTES = 25 * 1024 * 1024
    MEDIA_REQUIRE_HTTPS = True
    # Hosts (exact names) the fetcher may reach on private addresses and any port: the
    # simulator's CDN in tests and the demo. Never a real deployment's.
    MEDIA_PRIVATE_HOSTS: list[str] = []
    MEDIA_CONNECT_TIMEOUT_SECONDS = 5.0
    MEDIA_READ_TIMEOUT_SECONDS = 15.0
    MEDIA_FETCH_DEADLINE_SECONDS = 120.0  # a whole download, however slowly the bytes come
    MEDIA_MAX_REDIRECTS = 3
    MEDIA_STORAGE = "local"  # files under MEDIA_ROOT (the storage interface allows others)
    MEDIA_PUBLIC_URL_SECONDS = 3600  # how long a signed link to a staff upload works (Instagram fetches it)
    MEDIA_STORY_SECONDS = 24 * 3600  # a story (and its link) lives this long; shown until then, never kept
    MEDIA_CACHE_SECONDS = 365 * 24 * 3600  # browsers keep stored media (URLs change with the file)
    # Public base URL of this inbox, used for links Meta must fetch (outgoing media).
    PUBLIC_BASE_URL: str | None = None
    MAX_CONTENT_LENGTH = 30 * 1024 * 1024
    # Meta's maxima: 1,000 events per POST, a text of at most 1,000 UTF-8 bytes that JSON may
    # escape to 6 bytes each (\\uXXXX), plus the envelope, ids, attachments and referral:
    # 8 KiB an event at worst. A signed body over this is stored as "failed" (a person
    # decides), one over MAX_CONTENT_LENGTH is refused with 413 unread.
    WEBHOOK_MAX_BYTES = 1000 * 8 * 1024
    # Apply each delivery in the request that stored it, through the applier's code, before
    # answering (tests that read the database right after a POST); off, the worker's applier
    # applies it moments later.
    WEBHOOK_APPLY_INLINE = False
    # The applier (one loop per worker process, services/applier.py): deliveries per claim,
    # the bytes of bodies applied in one transaction, how often it looks without a wake-up,
    # how long a claim holds before another applier may take the delivery, and the lag at
    # which /healthz says it is behind.
    APPLIER_BATCH_DELIVERIES = 200
    APPLIER_BATCH_BYTES = 2 * 1024 * 1024
    APPLIER_POLL_SECONDS = 2.0
    APPLIER_LEASE_SECONDS = 300
    APPLIER_MAX_LAG_SECONDS = 60
    # How long a pending send may wait for its echo to claim it by content (seconds).
    ECHO_CLAIM_WINDOW_SECONDS = 900
    # Replies: waits between tries after throttling or an outage (then the reply fails), and how
    # long a send that may have gone out waits for its echo before it fails (never resent).
    SEND_RETRY_INTERVALS = [5, 30, 120, 600, 1800]
    SEND_ECHO_WAIT_SECONDS = 600
    # standby[] events belong to threads another app owns (handover); stored but not applied.
    WEBHOOK_APPLY_STANDBY = False
    # On PostgreSQL, applied events commit without waiting for the disk; the delivery row
    # itself always commits durably first (services/ingest/dispatch.py says why nothing is lost).
    WEBHOOK_ASYNC_COMMIT = True
    # Apply consecutive plain customer messages of one delivery in one set-based transaction.
    WEBHOOK_BULK = True
    # The worker replays interrupted deliveries (still "received" after 5 minutes) and
    # failed ones this often, each failed one up to WEBHOOK_AUTO_REPLAY_ATTEMPTS tries in all.
    WEBHOOK_RECOVER_INTERVAL_SECONDS = 300
    WEBHOOK_AUTO_REPLAY_ATTEMPTS = 3
    GRAPH_TIMEOUT_SECONDS = 10.0
    GRAPH_CONVERSATIONS_RATE = 2.0  # calls per second per account (Meta's limit)
    GRAPH_SEND_RATE = 100.0
    GRAPH_SEND_MEDIA_RATE = 10.0  # audio and video sends (Meta's limit)
    GRAPH_PROFILE_RATE: float | None = None  # Meta publishes none; set one to pace profile fetches
    GRAPH_PRIVATE_REPLIES_PER_HOUR: float | None = 750  # Meta's budget for private replies (posts and reels)
    GRAPH_COMMENTS_RATE: float | None = None  # Comments API calls per second (Meta: usage-based, no fixed rate)
    GRAPH_READ_RETRIES = 3  # transient and throttling errors on reads
    GRAPH_RETRY_BACKOFF_SECONDS = 0.5  # doubled on each retry
    GRAPH_MAX_RETRY_WAIT_SECONDS = 30.0  # a longer wait is left to the job (RateLimited.retry_after)
    IDENTITY_TTL_SECONDS = 7 * 24 * 3600
    # The daily account check: refresh long-lived tokens this close to expiry (they last
    # 60 days), and restore missing webhook subscriptions; runs at this hour (UTC).
    TOKEN_REFRESH_WITHIN_DAYS = 15
    ACCOUNT_CHECK_HOUR_UTC = 4
    # Identities (participants' profiles) and the runs that rebuild them.
    IDENTITY_ERROR_RETRY_SECONDS = 3600  # after a failed fetch, first contact tries again this much later
    IDENTITY_PIC_REFRESH_MARGIN_SECONDS = 12 * 3600  # refetch when the picture URL expires within this
    IDENTITY_REFRESH_CONCURRENCY = 16  # profile calls in flight during "Refresh identities" (100/s at ~150 ms each)
    IDENTITY_REFRESH_DAYS = 30  # refresh also covers everyone who wrote in this many days
    SYNC_PAGE_SIZE = 100  # conversations per Conversations API call (halved when Meta asks for less data)
    SYNC_MESSAGES_PER_CONVERSATION = 20  # Meta details only a thread's 20 newest messages
    JOB_PROGRESS_INTERVAL_SECONDS = 0.5  # at most this often a run writes and pushes its progress
    JOB_HEARTBEAT_SECONDS = 10.0  # a running run says it is alive this often; 3 misses mean it died
    JOB_TIMEOUT_SECONDS = 3600  # RQ timeout of a refresh or resync run
    # Insights: an account with more conversations than this gets its first full build of
    # the facts from the worker (the page says "preparing"); smaller ones build in the request.
    INSIGHTS_INLINE_FIRST_BUILD = 5000
    # The page folds new messages in at most this often (its figures are this fresh); the
    # CSV export and the CLI always fold everything in first.
    INSIGHTS_REFRESH_SECONDS = 30
    LOGIN_MAX_FAILURES = 5
    LOGIN_LOCK_SECONDS = 30
    WORKER_HEARTBEAT_SECONDS = 10
    # RQ's own upkeep (dead workers' jobs, a scheduler lock a killed worker left) this often.
    WORKER_MAINTENANCE_SECONDS = 15
    # The worker's reconciler looks for obligations in the database (replies, media, profiles,
    # deliveries, dead runs, periodic checks) this often, and enqueues what is due and not running.
    RECONCILE_INTERVAL_SECONDS = 5.0
    # An obligation younger than this is left to the enqueue that its own commit made.
    RECONCILE_GRACE_SECONDS = 10.0
    # An obligation still not done this long after it was due is overdue (/healthz, deliveries page).
    OBLIGATION_OVERDUE_SECONDS = 120
    # Proxies in front of the web process that set X-Forwarded-For/-Proto/-Host (0: trust none).
    TRUSTED_PROXIES = 0
    # A failed login delays the next try from that client or for that email; the delay doubles
    # with each failure but never exceeds this, so a stranger cannot lock someone out for long.
    LOGIN_MAX_DELAY_SECONDS = 60
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = False
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    # Operating it: /metrics answers only with this bearer token (no token: no /metrics); errors
    # go to Sentry when SENTRY_DSN is set; LOG_FORMAT=json (environment) makes every log line JSON.
    MIGRATIONS_DIR: str | None = None  # None: migrations/ beside the inbox package (a checkout)
    METRICS_TOKEN: str | None = None
    SENTRY_DSN: str | None = None
    SENTRY_ENVIRONMENT: str | None = None  # default: INBOX_ENV
    # Meta's signed_request (data deletion, deauthorize) older than this is refused.
    SIGNED_REQUEST_MAX_AGE_SECONDS = 24 * 3600
    # `inbox doctor` fails an account whose token expires within this many days.
    DOCTOR_TOKEN_MIN_DAYS = 7
    # Inbox search on PostgreSQL: how many conversations (in list order) are checked one by one
    # for a text before the trigram index is asked instead (fast for common words).
    SEARCH_WALK_WINDOW = 400
    # Staff invites: links last this long; emailed through Flask-Mail when MAIL_SERVER is set
    # (without it the admin copies the link from the page or the CLI).
    INVITE_DAYS = 7
    MAIL_SERVER: str | None = None
    MAIL_PORT = 587
    MAIL_USE_TLS = True
    MAIL_USE_SSL = False
    MAIL_USERNAME: str | None = None
    MAIL_PASSWORD: str | None = None
    MAIL_DEFAULT_SENDER: str | None = None
    MAIL_TIMEOUT = 10
    # Presence: a viewer's mark lives this long without a heartbeat, a typist's this long.
    PRESENCE_VIEW_SECONDS = 45
    PRESENCE_TYPING_SECONDS = 6
    # "A colleague just replied": sending within this many seconds of it asks for a confirmation.
    COLLISION_SECONDS = 30


# Values read from the environment, and how to read them.
_ENV_STRINGS = (
    "INBOX_ENV",
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_NAMESPACE",
    "META_APP_SECRET",
    "META_INSTAGRAM_APP_SECRET",
    "META_VERIFY_TOKEN",
    "META_APP_ID",
    "META_INSTAGRAM_APP_ID",
    "GRAPH_API_BASE",
    "GRAPH_API_VERSION",
    "GRAPH_API_FLAVOUR",
    "GRAPH_FACEBOOK_API_BASE",
    "OAUTH_AUTHORIZE_URL",
    "OAUTH_TOKEN_URL",
    "TOKEN_ENCRYPTION_KEY",
    "MEDIA_ROOT",
    "PUBLIC_BASE_URL",
    "METRICS_TOKEN",
    "SENTRY_DSN",
    "SENTRY_ENVIRONMENT",
    "MIGRATIONS_DIR",
    "MAIL_SERVER",
    "MAIL_USERNAME",
    "MAIL_PASSWORD",
    "MAIL_DEFAULT_SENDER",
)

# Secrets production must be given; development generates and keeps them.
REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "TOKEN_ENCRYPTION_KEY", "META_APP_SECRET", "META_VERIFY_TOKEN")


class ConfigError(RuntimeError):
    """The configuration cannot start the app."""


def load_config(app, test_config: dict | None) -> None:
    """Fill app.config from the four layers in order."""
    app.config.from_object(Defaults)
    app.config.from_pyfile("config.py", silent=True)
    for name in _ENV_STRINGS:
        value = os.environ.get(name)
        if value:
            app.config[name] = value
    proxies = os.environ.get("TRUSTED_PROXIES", "").strip()
    if proxies:
        if not proxies.isdigit():
            raise ConfigError("TRUSTED_PROXIES is the number of proxies in front of the inbox (0, 1, 2…).")
        app.config["TRUSTED_PROXIES"] = int(proxies)
    if os.environ.get("MAIL_PORT", "").isdigit():
        app.config["MAIL_PORT"] = int(os.environ["MAIL_PORT"])
    for name in ("MAIL_USE_TLS", "MAIL_USE_SSL"):
        if os.environ.get(name):
            app.config[name] = os.environ[name].strip().lower() in ("1", "true", "yes", "on")
    if test_config:
        app.config.update(test_config)
    _finish(app)


def _finish(app) -> None:
    cfg = app.config
    instance = Path(app.instance_path)
    production = cfg["INBOX_ENV"] == "production"
    if production:
        missing = [name for name in REQUIRED_IN_PRODUCTION if not cfg.get(name)]
        if missing:
            raise ConfigError(
                "Missing required settings in production: "
                + ", ".join(missing)
                + ". Set them in the environment or in instance/config.py."
            )
        cfg["SESSION_COOKIE_SECURE"] = True
        cfg["REMEMBER_COOKIE_SECURE"] = True
    else:
        _fill_development_secrets(cfg, instance)

    if not cfg.get("DATABASE_URL"):
        instance.mkdir(parents=True, exist_ok=True)
        cfg["DATABASE_URL"] = f"sqlite:///{instance / 'inbox.sqlite3'}"
    cfg["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(cfg["DATABASE_URL"])
    if cfg["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # SQLite: wait for a writer instead of failing at once; several threads share the file.
        options = dict(cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        options.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        cfg["SQLALCHEMY_ENGINE_OPTIONS"] = options
    # The webhook's acknowledgement engine: the same database and options, without the
    # pre-ping round trip (a dropped connection is retried once: services/deliveries.py).
    binds = dict(cfg.get("SQLALCHEMY_BINDS") or {})
    binds.setdefault("ack", {**(cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {}), "url": cfg["SQLALCHEMY_DATABASE_URI"],
                             "pool_pre_ping": False})
    cfg["SQLALCHEMY_BINDS"] = binds
    if not cfg.get("MEDIA_ROOT"):
        cfg["MEDIA_ROOT"] = str(instance / "media")


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs written the usual way."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _fill_development_secrets(cfg, instance: Path) -> None:
    """Generate missing secrets once and keep them under instance/ so sessions survive restarts."""
    wanted = {
        "SECRET_KEY": lambda: secrets.token_urlsafe(32),
        "TOKEN_ENCRYPTION_KEY": lambda: Fernet.generate_key().decode(),
        "META_VERIFY_TOKEN": lambda: secrets.token_urlsafe(16),
        "META_APP_SECRET": lambda: secrets.token_hex(16),
    }
    if all(cfg.get(name) for name in wanted):
        return
    path = instance / "secrets.json"
    stored: dict = {}
    if path.exists():
        stored = json.loads(path.read_text())
    changed = False
    for name, make in wanted.items():
        if cfg.get(name):
            continue
        if name not in stored:
            stored[name] = make()
            changed = True
        cfg[name] = stored[name]
    if changed:
        instance.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stored, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
