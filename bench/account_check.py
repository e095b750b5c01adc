"""Time the daily account check (token refresh + webhook subscription) against the simulator.

    .venv/bin/python bench/account_check.py [--accounts 200] [--latency 0.05]

Every account's subscription is read; half the tokens are near expiry (refreshed), one
in ten subscriptions was dropped (restored), one in twenty tokens is revoked (reconnect
needed). The check is sequential by design (a daily job, gentle on Meta), so the figure
to watch is wall time per account against the job's 30-minute timeout. SQLite in a
temporary directory; REDIS_URL when set, else an embedded Redis.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import update  # noqa: E402

from inbox import create_app, embedded_redis  # noqa: E402
from inbox.extensions import db  # noqa: E402
from inbox.models import Account, utcnow  # noqa: E402
from inbox.services.accounts import add_account  # noqa: E402
from inbox.services.accounts_maintenance import refresh_tokens  # noqa: E402
from inbox.sim import Simulator  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--accounts", type=int, default=200)
    p.add_argument("--latency", type=float, default=0.05, help="seconds added to every Graph answer")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis_url, _ = embedded_redis.ensure_running(Path(tmp) / "redis", persist=False)
        sim = Simulator().serve()
        app = create_app({"TESTING": True, "INBOX_ENV": "test", "SECRET_KEY": "x",
                          "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(), "META_APP_SECRET": "s",
                          "META_VERIFY_TOKEN": "v", "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
                          "REDIS_URL": redis_url, "REDIS_NAMESPACE": f"bench{os.getpid()}",
                          "GRAPH_API_BASE": sim.url})
        with app.app_context():
            upgrade()
            now = utcnow()
            for i in range(args.accounts):
                shop = sim.add_account(f"shop{i}")
                shop.age_token(50 * 24 * 3600)
                account = add_account(shop.ig_user_id, shop.username, token=shop.token)
                near = i % 2 == 0
                db.session.execute(update(Account).where(Account.id == account.id).values(
                    token_expires_at=now + timedelta(days=10 if near else 50),
                    token_refreshed_at=now - timedelta(days=50)))
                if i % 10 == 3:
                    shop.unsubscribe()
                if i % 20 == 7:
                    shop.revoke_token()
            db.session.commit()
            sim.faults.latency = args.latency
            started = time.perf_counter()
            checks = refresh_tokens()
            wall = time.perf_counter() - started
        calls = Counter(c.endpoint for c in sim.calls)
        sim.close()
        if not os.environ.get("REDIS_URL"):
            embedded_redis.stop(Path(tmp) / "redis")

    outcome = Counter()
    for check in checks:
        outcome["refreshed"] += check.refreshed
        outcome["restored"] += bool(check.restored_fields)
        outcome["reconnect needed"] += check.reconnect_needed
        outcome["errors"] += bool(check.errors)
    print(f"{args.accounts} accounts, {args.latency * 1000:.0f} ms per Graph call")
    print(f"wall {wall:.2f} s, {wall / args.accounts * 1000:.0f} ms per account; "
          + ", ".join(f"{k} {v}" for k, v in outcome.items())
          + "; Graph calls " + ", ".join(f"{k} {v}" for k, v in sorted(calls.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
