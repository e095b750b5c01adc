"""What bench/refresh_identities.py and bench/resync.py share: a migrated database, Redis, the simulator."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402

from inbox import create_app, embedded_redis  # noqa: E402
from inbox.sim import Simulator  # noqa: E402


@contextmanager
def bench_app(database_url: str | None, **config):
    """(app, sim): a fresh, migrated database (SQLite in a temporary directory unless given),
    REDIS_URL or an embedded Redis, and a simulator the app talks to."""
    with tempfile.TemporaryDirectory() as tmp:
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis_url, _ = embedded_redis.ensure_running(Path(tmp) / "redis", persist=False)
        sim = Simulator().serve()
        app = create_app({
            "TESTING": True, "INBOX_ENV": "test", "SECRET_KEY": "bench", "META_APP_SECRET": "bench",
            "META_VERIFY_TOKEN": "bench", "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "DATABASE_URL": database_url or f"sqlite:///{tmp}/bench.sqlite3", "REDIS_URL": redis_url,
            "REDIS_NAMESPACE": f"bench{os.getpid()}", "GRAPH_API_BASE": sim.url, **config,
        })
        from flask_migrate import downgrade, upgrade

        from inbox.extensions import db, get_redis

        with app.app_context():
            if database_url:
                downgrade(revision="base")  # a given database starts empty
            upgrade()
        try:
            yield app, sim
        finally:
            sim.close()
            with app.app_context():
                r = get_redis(app)
                keys = list(r.scan_iter(match=f"*bench{os.getpid()}*", count=1000))
                if keys:
                    r.delete(*keys)
                db.engine.dispose()
            if not os.environ.get("REDIS_URL"):
                embedded_redis.stop(Path(tmp) / "redis")


def add_account(app, shop):
    from inbox.services.accounts import add_account as add

    with app.app_context():
        account = add(shop.ig_user_id, shop.username, token=shop.token)
        return account.id


def add_conversations(app, account_id: int, igsids: list[str]) -> None:
    """One conversation per customer, as ingestion would have left them (bulk insert)."""
    from sqlalchemy import insert

    from inbox.extensions import db
    from inbox.models import Conversation

    now = datetime.now(timezone.utc)
    with app.app_context():
        db.session.execute(insert(Conversation), [
            {"account_id": account_id, "customer_igsid": igsid, "unread_count": 0, "status": "open",
             "last_message_at": now, "created_at": now, "updated_at": now} for igsid in igsids])
        db.session.commit()


def graph_calls(sim, endpoint: str) -> tuple[int, int]:
    """(calls, calls Meta would have refused for the rate limit) to one endpoint."""
    calls = sim.calls_to(endpoint)
    return len(calls), sum(1 for c in calls if c.code in (4, 17, 32, 613, 80002))
