"""Inbox render times on PostgreSQL: the list page, the next page, a thread, and search.

    .venv/bin/python bench/inbox_render.py                       # 10,000 then 100,000 conversations
    .venv/bin/python bench/inbox_render.py --conversations 20000 --messages 400000 --small 2000   # quick
    .venv/bin/python bench/inbox_render.py --reuse               # keep the loaded databases

Loads each size into its own database on the local PostgreSQL (`<base>_small` and
`<base>`, default base `bench_inbox`; dropped and created again unless --reuse finds the
same sizes there) with COPY: conversations with identities (most named), messages whose
text is drawn from a shop vocabulary with a long tail, some photo attachments, products
on a share of the conversations. Then it serves real requests through the Flask app in
this process (the same code as production, logged in as an agent): the inbox page, a
deeper page of the list (keyset cursor), a thread fragment (opening it marks it read) and
search as you type. Prints p50/p95 per kind and the large/small ratio.

Targets (issue 5): list and thread p95 <= 40 ms, and <= 1.5x the time at 10,000
conversations; search p95 <= 100 ms over 2,000,000 messages.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

WORDS = """hi hello thanks please price size colour color available stock ship shipping delivery order
when how much is the a an in on to for of and or do you have still it this that my your can i we
dress bag linen shirt shoes sandals hat scarf blue red green black white natural beige small medium
large xl xs return exchange refund discount sale code tracking number paid payment card cash week
today tomorrow monday friday address lisbon porto madrid paris berlin london gift wrap box photo
picture video reel post story link website instagram dm message reply soon great love perfect
beautiful nice cute amazing wow ok okay sure yes no maybe later again sorry problem broken wrong
missing late arrived received package courier express standard international europe fee free""".split()
FIRST = "amara bea carlos dev elif farid gwen hiro ines jules kai lena mateo nia omar priya quinn rosa sami tomas".split()
LAST = "kone silva moreau patel yilmaz haddad jones tanaka ruiz laurent berg costa novak okafor".split()


def tail_words(n: int, rng: random.Random) -> list[str]:
    """Invented words for the long tail (product names, typos, names of places)."""
    syllables = "ka lo mi ren ta vo shi ne ru da pe zo li fa gu te ba mo si ku".split()
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(n)]


def sentence(rng: random.Random, vocab: list[str], cum: list[float]) -> str:
    words = rng.choices(vocab, cum_weights=cum, k=rng.randint(3, 14))
    return " ".join(words).capitalize() + rng.choice(("?", ".", "!", ""))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--messages", type=int, default=2_000_000)
    p.add_argument("--small", type=int, default=10_000, help="conversations of the comparison run (0: skip it)")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--base-url", default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bench_inbox"))
    p.add_argument("--reuse", action="store_true", help="keep a database that already holds these sizes")
    args = p.parse_args()

    per_conversation = args.messages / args.conversations
    runs = []
    if args.small:
        runs.append(("small", args.small, round(args.small * per_conversation)))
    runs.append(("large", args.conversations, args.messages))
    results = {}
    for label, conversations, messages in runs:
        url = make_url(args.base_url)
        if label == "small":
            url = url.set(database=f"{url.database}_small")
        print(f"== {conversations:,} conversations, {messages:,} messages ({url.database})", flush=True)
        results[label] = run(url, conversations, messages, args.samples, args.reuse)
    if "small" in results:
        print("== large / small (p95)")
        for kind in ("list page", "next page", "thread"):
            print(f"{kind:>12}: {results['large'][kind][1] / results['small'][kind][1]:.2f}x")
    return 0


def run(url, conversations: int, messages: int, samples: int, reuse: bool) -> dict[str, tuple[float, float]]:
    fresh = ensure_database(url, reuse, conversations, messages)
    app = build_app(url.render_as_string(hide_password=False))
    from flask_migrate import upgrade

    from inbox.extensions import db

    with app.app_context():
        started = time.perf_counter()
        upgrade()  # a database kept with --reuse gets the migrations added since it was loaded
        if not fresh and time.perf_counter() - started > 1:
            print(f"migrated in {time.perf_counter() - started:.0f} s", flush=True)
        if fresh:
            started = time.perf_counter()
            load(db, conversations, messages)
            print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)
        account_id, email = db.session.execute(sa.text(
            "SELECT a.id, u.email FROM accounts a JOIN memberships m ON m.account_id = a.id "
            "JOIN staff_users u ON u.id = m.user_id ORDER BY a.id LIMIT 1")).one()
        ids = [r[0] for r in db.session.execute(sa.text(
            "SELECT id FROM conversations WHERE account_id = :a ORDER BY random() LIMIT :n"),
            {"a": account_id, "n": samples * 2})]
        cursors = [f"{int(r[0].timestamp() * 1_000_000)}.{r[1]}" for r in db.session.execute(sa.text(
            "SELECT last_message_at, id FROM conversations WHERE account_id = :a ORDER BY random() LIMIT :n"),
            {"a": account_id, "n": samples})]
        usernames = [r[0] for r in db.session.execute(sa.text(
            "SELECT username FROM identities WHERE username IS NOT NULL ORDER BY random() LIMIT 40"))]
        db.session.remove()
    client = app.test_client()
    assert client.post("/login", data={"email": email, "password": "bench-password"}).status_code == 302
    hx = {"HX-Request": "true"}
    base = f"/accounts/{account_id}"
    rng = random.Random(7)
    terms = searches(rng, usernames)

    cpu_ms: dict[str, list[float]] = {}

    def timed(path: str, headers=None, kind: str = "") -> float:
        cpu = time.process_time()
        started = time.perf_counter()
        response = client.get(path, headers=headers or {})
        elapsed = (time.perf_counter() - started) * 1000
        cpu_ms.setdefault(kind, []).append((time.process_time() - cpu) * 1000)
        assert response.status_code == 200, (path, response.status_code)
        return elapsed

    for _ in range(10):  # warm the pools, caches and compiled statements
        timed(base + "/")
        timed(f"{base}/c/{ids[0]}", hx)
        timed(f"{base}/list?q=linen", hx)
    load_before = os.getloadavg()[0]
    out = {
        "list page": [timed(base + "/", kind="list page") for _ in range(samples)],
        "next page": [timed(f"{base}/list?cursor={c}", hx, "next page") for c in cursors[:samples]],
        "thread": [timed(f"{base}/c/{cid}", hx, "thread") for cid in ids[:samples]],
        "search": [timed(f"{base}/list?q={t}", hx, "search")
                   for t in (terms * (samples // len(terms) + 1))[:samples]],
    }
    # Search by kind of term: each term of a kind in turn, `samples` requests per kind.
    for kind, kind_terms in search_kinds(usernames).items():
        out[f"search: {kind}"] = [timed(f"{base}/list?q={t}", hx, f"search: {kind}")
                                  for t in (kind_terms * (samples // len(kind_terms) + 1))[:samples]]
    print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs "
          "(wall times include waiting for a CPU)")
    summary = {}
    for kind, times in out.items():
        times.sort()
        p50 = statistics.median(times)
        p95 = times[int(len(times) * 0.95) - 1]
        summary[kind] = (p50, p95)
        cpu = sorted(cpu_ms[kind])
        print(f"{kind:>36}: p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  max {times[-1]:6.1f} ms  (n={len(times)}); "
              f"app CPU p50 {statistics.median(cpu):5.1f} ms", flush=True)
    slow = sorted(((timed(f"{base}/list?q={t}", hx), t) for t in terms), reverse=True)[:3]
    print("   slowest searches: " + ", ".join(f"{t!r} {ms:.0f} ms" for ms, t in slow), flush=True)
    with app.app_context():
        db.engine.dispose()
    return summary


def search_kinds(usernames: list[str]) -> dict[str, list[str]]:
    """The terms of issue 15's search target by kind: common words, rare words, rare phrases of common words."""
    return {
        "common words": ["linen", "price", "shipping", "dress", "available", "refund", "the", "you"],
        "rare words": tail_words(200, random.Random(1))[:10],
        "rare phrases of common words": ["ship to", "still available", "tracking number", "gift wrap",
                                         "do you ship", "blue dress", "refund please", "size medium",
                                         "paid today", "the red bag"],
    }


def searches(rng: random.Random, usernames: list[str]) -> list[str]:
    """What staff type: a common word, a rarer one, a phrase, a name, a fragment, something absent."""
    common = ["linen", "price", "shipping", "dress", "available", "refund"]
    phrases = ["ship to", "still available", "tracking number", "gift wrap"]
    names = [u[:5] for u in usernames[:8]] + ["@" + u for u in usernames[8:12]] + ["amara", "kone", "tanaka"]
    rare = [w for w in tail_words(200, random.Random(1))][:10]
    absent = ["zzqx", "nothinglikethis", "qwertyuiop"]
    fragments = ["lisb", "por", "wra"]
    return common + phrases + names + rare + absent + fragments


# --- Databases and data --------------------------------------------------------------------

def ensure_database(url, reuse: bool, conversations: int, messages: int) -> bool:
    """True when the database was (re)created and needs loading."""
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database})
    if exists and reuse:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                have = conn.execute(sa.text("SELECT (SELECT count(*) FROM conversations), "
                                            "(SELECT count(*) FROM messages)")).one()
            if have[0] == conversations and abs(have[1] - messages) <= messages * 0.05:
                print(f"reusing {url.database}: {have[0]:,} conversations, {have[1]:,} messages", flush=True)
                return False
        except sa.exc.DBAPIError:
            pass
        finally:
            engine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()
    return True


def build_app(database_url: str):
    from inbox import create_app, embedded_redis

    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis_url, _ = embedded_redis.ensure_running(Path(tempfile.gettempdir()) / f"bench-inbox-redis-{os.getpid()}",
                                                     persist=False)
    return create_app({
        "TESTING": True, "INBOX_ENV": "test", "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False,
        "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(), "META_APP_SECRET": "bench",
        "META_VERIFY_TOKEN": "bench", "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": f"bench{os.getpid()}",
    })


def load(db, conversations: int, messages: int) -> None:
    from inbox.services import accounts, staff

    rng = random.Random(42)
    account = accounts.add_account("17841499999999999", "bench_shop", token="TOKEN")
    user = staff.create_user("agent@bench.example", "bench-password", name="Agent")
    staff.grant(user.id, account.id, "agent")
    db.session.commit()
    account_id = account.id
    now = datetime.now(timezone.utc)
    t0 = now - timedelta(days=180)
    vocab = WORDS + tail_words(3000, random.Random(1))
    weights = [1 / (i + 1) ** 1.05 for i in range(len(vocab))]
    cum = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)

    raw = db.engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:
            cur.execute("DROP INDEX IF EXISTS ix_messages_text_trgm")
            cur.execute("DROP INDEX IF EXISTS ix_messages_word_pairs")
            product_ids = []
            for i in range(40):
                cur.execute("INSERT INTO products (account_id, name, sku, keywords, active, created_at, updated_at) "
                            "VALUES (%s, %s, %s, '', true, now(), now()) RETURNING id",
                            (account_id, f"{rng.choice(['Linen', 'Woven', 'Silk', 'Cotton'])} "
                                         f"{rng.choice(['dress', 'bag', 'shirt', 'scarf', 'hat'])} {i}", f"SKU-{i}"))
                product_ids.append(cur.fetchone()[0])
            # Message counts per conversation: 1..(2*avg-1), about `messages` in all.
            avg = messages / conversations
            counts = [max(1, int(rng.uniform(1, 2 * avg))) for _ in range(conversations)]
            plans = []
            with cur.copy("COPY identities (account_id, igsid, username, name, source, created_at, updated_at) "
                          "FROM STDIN") as copy:
                for c in range(conversations):
                    igsid = str(9_200_000_000_000_000 + c)
                    if rng.random() < 0.9:
                        first, last = rng.choice(FIRST), rng.choice(LAST)
                        copy.write_row((account_id, igsid, f"{first}.{last}{c}", f"{first.title()} {last.title()}",
                                        "profile", now, now))
                    plans.append(igsid)
            message_id = 0
            attachment_rows = []
            # Conversations first (messages refer to them), times decided here.
            conv_rows, message_plan, texts = [], [], {}
            for c, igsid in enumerate(plans):
                n = counts[c]
                end = t0 + timedelta(seconds=rng.uniform(0, 180 * 86400))
                start = end - timedelta(seconds=n * rng.uniform(30, 3600))
                times = sorted(start + timedelta(seconds=rng.uniform(0, (end - start).total_seconds()))
                               for _ in range(n - 1)) + [end]
                message_plan.append(times)
                last_out = n > 1 and rng.random() < 0.5
                last_text = sentence(rng, vocab, cum)
                texts[c] = last_text
                conv_rows.append((c + 1, account_id, igsid, end, None, "out" if last_out else "in",
                                  "staff" if last_out else "customer", end if not last_out else times[0],
                                  0 if last_out else (rng.randint(1, 3) if rng.random() < 0.15 else 0),
                                  "done" if rng.random() < 0.3 else "open",
                                  rng.choice(product_ids) if rng.random() < 0.4 else None, start, end))
            with cur.copy("COPY conversations (id, account_id, customer_igsid, last_message_at, last_message_preview, "
                          "last_message_direction, last_message_sender_kind, last_customer_message_at, unread_count, "
                          "status, product_id, created_at, updated_at) FROM STDIN") as copy:
                for c, row in enumerate(conv_rows):
                    copy.write_row(row[:4] + (texts[c][:255],) + row[5:])
            with cur.copy("COPY messages (id, account_id, conversation_id, mid, direction, sender_kind, sender_igsid, "
                          "text, status, is_unsupported, send_attempts, is_deleted, edit_count, meta_timestamp, "
                          "created_at, updated_at) FROM STDIN") as copy:
                for c, times in enumerate(message_plan):
                    igsid = plans[c]
                    last_out = conv_rows[c][5] == "out"
                    for m, at in enumerate(times):
                        message_id += 1
                        out = (m % 2 == 1) if not (m == len(times) - 1) else last_out
                        final = m == len(times) - 1
                        text = texts[c] if final else sentence(rng, vocab, cum)
                        photo = not out and not final and rng.random() < 0.05
                        if photo:
                            attachment_rows.append((account_id, message_id, 0, "image",
                                                    f"https://scontent.cdninstagram.com/v/t51/{message_id}.jpg", at))
                            text = None if rng.random() < 0.7 else text
                        copy.write_row((message_id, account_id, c + 1, f"mid.bench.{message_id}",
                                        "out" if out else "in", "staff" if out else "customer",
                                        "17841499999999999" if out else igsid, text, "sent" if out else None,
                                        False, 0, False, 0, int(at.timestamp() * 1000), at, at))
            with cur.copy("COPY attachments (account_id, message_id, position, type, source_url, created_at) "
                          "FROM STDIN") as copy:
                for row in attachment_rows:
                    copy.write_row(row)
            for table in ("conversations", "messages"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            print(f"copied {message_id:,} messages, {len(attachment_rows):,} attachments; indexing", flush=True)
            cur.execute("CREATE INDEX ix_messages_text_trgm ON messages USING gin (text gin_trgm_ops)")
            cur.execute("CREATE INDEX ix_messages_word_pairs ON messages USING gin (message_word_pairs(text))")
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    finally:
        raw.close()


if __name__ == "__main__":
    sys.exit(main())
