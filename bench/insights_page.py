"""The Insights page on PostgreSQL at 100,000 conversations and 2,000,000 messages (issue 18).

    .venv/bin/python bench/insights_page.py                      # 100k conversations, 2M messages
    .venv/bin/python bench/insights_page.py --conversations 10000 --messages 200000   # quick
    .venv/bin/python bench/insights_page.py --reuse              # keep the loaded database

Loads one account into its own database (default `bench_insights`) with COPY: 120 days of
conversations whose first message is a plain DM, a shared post (50 posts, linked to
products), an ad referral (10 ads), a story reply, or a private reply to a comment;
customer messages and replies from four staff and the owner's app, alternating; products
on 40% of the conversations; comments on the posts; Sold / Not sold on 5%. Business hours
Monday–Friday 09:00–18:00 in Europe/Lisbon.

Then: the first refresh (every fact computed from the messages, once per account), and
the page served through the Flask app in this process (logged in as an agent) for the
7-, 30- and 90-day presets, with ten new messages written between requests (to random
conversations, old ones included); the page folds them in at most every
INSIGHTS_REFRESH_SECONDS (30 s; `--refresh-seconds 0` folds in on every request).
Prints p50/p95 per preset. Target: p95 <= 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from inbox_render import build_app, ensure_database  # noqa: E402

DAYS = 120
ACCOUNT_IG = "17841477777777777"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--messages", type=int, default=2_000_000)
    p.add_argument("--samples", type=int, default=60, help="requests per preset")
    p.add_argument("--base-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                        "postgresql://postgres@127.0.0.1:5432/bench_insights"))
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--refresh-seconds", type=float, default=None,
                   help="INSIGHTS_REFRESH_SECONDS for the run (default: the app's, 30; 0 folds in on every request)")
    args = p.parse_args()
    url = make_url(args.base_url)
    print(f"== {args.conversations:,} conversations, {args.messages:,} messages ({url.database})", flush=True)
    fresh = ensure_database(url, args.reuse, args.conversations, args.messages)
    app = build_app(url.render_as_string(hide_password=False))
    if args.refresh_seconds is not None:
        app.config["INSIGHTS_REFRESH_SECONDS"] = args.refresh_seconds
    print(f"page refresh at most every {app.config['INSIGHTS_REFRESH_SECONDS']:g} s", flush=True)
    from flask_migrate import upgrade

    from inbox.extensions import db
    from inbox.services.insights import facts

    with app.app_context():
        if fresh:
            upgrade()
            started = time.perf_counter()
            load(db, args.conversations, args.messages)
            print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)
        account_id, email = db.session.execute(sa.text(
            "SELECT a.id, u.email FROM accounts a JOIN memberships m ON m.account_id = a.id "
            "JOIN staff_users u ON u.id = m.user_id WHERE m.role = 'agent' ORDER BY a.id LIMIT 1")).one()
        conversation_ids = [r[0] for r in db.session.execute(sa.text(
            "SELECT id FROM conversations WHERE account_id = :a ORDER BY random() LIMIT 2000"), {"a": account_id})]
        started = time.perf_counter()
        built = facts.settings_for(account_id).refreshed_through is not None
        facts.refresh(account_id, full=not built)  # a reused database only catches up
        print(f"{'catch-up' if built else 'first (full)'} refresh: {time.perf_counter() - started:.1f} s", flush=True)
        db.session.execute(sa.text("ANALYZE insight_conversations; ANALYZE insight_slots"))
        db.session.commit()
        db.session.remove()

    client = app.test_client()
    assert client.post("/login", data={"email": email, "password": "bench-password"}).status_code == 302
    base = f"/accounts/{account_id}/insights/"
    rng = random.Random(3)
    next_ts = [int(datetime.now(timezone.utc).timestamp() * 1000)]

    def write_messages(n: int) -> None:
        """Customers and staff keep writing between page views (what the incremental refresh folds in)."""
        with app.app_context():
            for _ in range(n):
                next_ts[0] += 1000
                cid = rng.choice(conversation_ids)
                out = rng.random() < 0.5
                db.session.execute(sa.text(
                    "INSERT INTO messages (account_id, conversation_id, mid, direction, sender_kind, status, "
                    "sent_by_user_id, is_unsupported, send_attempts, is_deleted, edit_count, meta_timestamp, "
                    "created_at, updated_at) SELECT :a, :c, :mid, :d, :k, :s, "
                    "(SELECT min(user_id) FROM memberships WHERE account_id = :a), false, 0, false, 0, :ts, now(), "
                    "now()"), {"a": account_id, "c": cid, "mid": f"mid.live.{next_ts[0]}", "d": "out" if out else "in",
                               "k": "staff" if out else "customer", "s": "sent" if out else None, "ts": next_ts[0]})
            db.session.commit()
            db.session.remove()

    cpu_ms: list[float] = []

    def timed(path: str) -> float:
        cpu = time.process_time()
        started = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        cpu_ms.append((time.process_time() - cpu) * 1000)
        assert response.status_code == 200, (path, response.status_code)
        return elapsed

    for days in (7, 30, 90):  # warm pools and compiled statements
        for _ in range(3):
            timed(f"{base}?days={days}")
    load_before = os.getloadavg()[0]
    results = {}
    for days in (7, 30, 90):
        times = []
        cpu_ms.clear()
        for _ in range(args.samples):
            write_messages(10)
            times.append(timed(f"{base}?days={days}"))
        times.sort()
        results[days] = times
        p50, p95 = statistics.median(times), times[int(len(times) * 0.95) - 1]
        print(f"{days:>3} days: p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  max {times[-1]:6.1f} ms  (n={len(times)}); "
              f"app CPU p50 {statistics.median(cpu_ms):5.1f} ms", flush=True)
    quiet = sorted(timed(f"{base}?days=30") for _ in range(args.samples))
    print(f" 30 days, nothing new between requests: p50 {statistics.median(quiet):6.1f} ms  "
          f"p95 {quiet[int(len(quiet) * 0.95) - 1]:6.1f} ms", flush=True)
    print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    with app.app_context():
        db.engine.dispose()
    return 0


def load(db, conversations: int, messages: int) -> None:
    from inbox.services import accounts, staff
    from inbox.services.insights import facts

    rng = random.Random(42)
    account = accounts.add_account(ACCOUNT_IG, "bench_insights", token="TOKEN")
    users = []
    for i, name in enumerate(("Ana", "Bruno", "Carla", "Diogo")):
        user = staff.create_user(f"staff{i}@bench.example", "bench-password", name=name)
        staff.grant(user.id, account.id, "agent")
        users.append(user.id)
    db.session.commit()
    account_id = account.id
    facts.update_settings(account_id, timezone="Europe/Lisbon",
                          schedule={d: [(9 * 60, 18 * 60)] for d in range(5)}, currency="EUR")
    now = datetime.now(timezone.utc)
    t0 = now - timedelta(days=DAYS)
    # Messages up to five minutes ago: their rows changed before the first refresh.
    raw = db.engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:
            product_ids, post_ids, media_ids = [], [], []
            for i in range(40):
                cur.execute("INSERT INTO products (account_id, name, sku, keywords, active, created_at, updated_at) "
                            "VALUES (%s, %s, %s, '', true, now(), now()) RETURNING id",
                            (account_id, f"Product {i}", f"SKU-{i}"))
                product_ids.append(cur.fetchone()[0])
            for i in range(50):
                media = str(17900000000000000 + i)
                cur.execute("INSERT INTO posts (account_id, media_id, caption, is_own, seen_via, first_seen_at, "
                            "last_seen_at) VALUES (%s, %s, %s, true, 'own_media', now(), now()) RETURNING id",
                            (account_id, media, f"Post {i}: new in"))
                post_id = cur.fetchone()[0]
                post_ids.append(post_id)
                media_ids.append(media)
                cur.execute("INSERT INTO post_products (account_id, post_id, product_id, auto_linked, created_at) "
                            "VALUES (%s, %s, %s, false, now())", (account_id, post_id, product_ids[i % 40]))
            with cur.copy("COPY comments (account_id, comment_id, field, media_id, post_id, author_igsid, is_own, "
                          "text, edit_count, hidden, deleted, is_read, meta_timestamp, created_at, updated_at) "
                          "FROM STDIN") as copy:
                for i in range(conversations // 2):
                    at = t0 + timedelta(seconds=rng.uniform(0, DAYS * 86400))
                    k = rng.randrange(50)
                    copy.write_row((account_id, f"c{i}", "comments", media_ids[k], post_ids[k], str(9_300_000 + i),
                                    False, "price?", 0, False, False, True, int(at.timestamp() * 1000), at, at))
            cur.execute("SELECT id FROM comments WHERE account_id = %s ORDER BY id", (account_id,))
            comment_ids = [r[0] for r in cur.fetchall()]
            avg = messages / conversations
            message_id = 0
            attachments = []
            sales = []
            with cur.copy("COPY conversations (id, account_id, customer_igsid, last_message_at, last_message_direction, "
                          "last_message_sender_kind, unread_count, status, product_id, created_at, updated_at) "
                          "FROM STDIN") as conv_copy:
                conv_rows = []
                for c in range(conversations):
                    n = max(1, int(rng.uniform(1, 2 * avg)))
                    start = t0 + timedelta(seconds=rng.uniform(0, DAYS * 86400 - 600))
                    times = [start]
                    for _ in range(n - 1):
                        at = times[-1] + timedelta(seconds=rng.expovariate(1 / 1800))
                        if at >= now - timedelta(minutes=5):
                            break
                        times.append(at)
                    source = rng.choices(("dm", "post", "ad", "story", "comment"), (45, 25, 12, 8, 10))[0]
                    conv_rows.append((c + 1, times, source))
                    conv_copy.write_row((c + 1, account_id, str(9_200_000_000_000_000 + c), times[-1],
                                         "in", "customer", 0, "open",
                                         rng.choice(product_ids) if rng.random() < 0.4 else None, start, times[-1]))
            with cur.copy("COPY messages (id, account_id, conversation_id, mid, direction, sender_kind, sender_igsid, "
                          "text, status, sent_by_user_id, referral, reply_to_story_id, comment_id, is_unsupported, "
                          "send_attempts, is_deleted, edit_count, meta_timestamp, created_at, updated_at) "
                          "FROM STDIN") as copy:
                used_comments = 0
                for cid, times, source in conv_rows:
                    for m, at in enumerate(times):
                        message_id += 1
                        private = source == "comment" and m == 0 and used_comments < len(comment_ids)
                        out = private or (m % 2 == 1)
                        referral = json.dumps({"source": "ADS", "type": "OPEN_THREAD", "ad_id": f"AD-{rng.randrange(10)}",
                                               "ads_context_data": {"ad_title": "Autumn sale",
                                                                    "post_id": rng.choice(media_ids)}}) \
                            if source == "ad" and m == 0 else None
                        if source == "post" and m == 0:
                            attachments.append((account_id, message_id, 0, "share", rng.choice(media_ids), at))
                        comment = comment_ids[used_comments] if private else None
                        used_comments += bool(private)
                        kind = "automation" if private else ("staff" if out and rng.random() < 0.85 else
                                                             "instagram_app" if out else "customer")
                        copy.write_row((message_id, account_id, cid, f"mid.bench.{message_id}", "out" if out else "in",
                                        kind, ACCOUNT_IG if out else "9", "text", "sent" if out else None,
                                        rng.choice(users) if kind == "staff" else None, referral,
                                        "st" if source == "story" and m == 0 else None, comment, False, 0, False, 0,
                                        int(at.timestamp() * 1000), at, at))
                    if rng.random() < 0.05:
                        sold = rng.random() < 0.7
                        sales.append((account_id, cid, "sold" if sold else "not_sold",
                                      rng.choice(product_ids), 1 if sold else None, 49.9 if sold else None,
                                      "EUR", None if sold else "Too expensive", True, times[-1]))
            with cur.copy("COPY attachments (account_id, message_id, position, type, media_id, created_at) "
                          "FROM STDIN") as copy:
                for row in attachments:
                    copy.write_row(row)
            with cur.copy("COPY sale_outcomes (account_id, conversation_id, outcome, product_id, quantity, amount, "
                          "currency, reason, is_current, marked_at) FROM STDIN") as copy:
                for row in sales:
                    copy.write_row(row)
            for table in ("conversations", "messages"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            print(f"copied {message_id:,} messages, {len(attachments):,} shares, {len(sales):,} outcomes", flush=True)
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    finally:
        raw.close()


if __name__ == "__main__":
    sys.exit(main())
