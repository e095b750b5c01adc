"""The settings every test app gets, and the Meta app secrets the simulator and signed webhooks share."""

from __future__ import annotations

from cryptography.fernet import Fernet

TOKEN_KEY = Fernet.generate_key().decode()
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"


def app_settings(database_url: str, redis_url: str, namespace: str, **extra) -> dict:
    """The mapping given to create_app: this session's database, a Redis namespace of its own."""
    return {
        "TESTING": True,
        "INBOX_ENV": "test",
        "SECRET_KEY": "test-secret-key",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": namespace,
        "TOKEN_ENCRYPTION_KEY": TOKEN_KEY,
        "META_APP_SECRET": APP_SECRET,
        "META_VERIFY_TOKEN": VERIFY_TOKEN,
        "MEDIA_REQUIRE_HTTPS": False,
        # Each POST applies its own delivery before answering, through the applier's code
        # (tests read the database right after); tests of the applier loop turn it off.
        "WEBHOOK_APPLY_INLINE": True,
        "SERVER_NAME": None,
        **extra,
    }
