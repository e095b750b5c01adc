"""Product assignment throughput, and the "why" panel / `conversations explain` with many events.

    .venv/bin/python bench/bench_products.py [--products 500] [--messages 2000] [--events 5000]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench .venv/bin/python bench/bench_products.py

Sets up an account with --products products (each with three keywords) and --messages
customer messages, one conversation each, every one sharing a post (rows written in bulk,
as ingestion leaves them). Then runs the assignment job's body (`assign_from_message`) for
every message, in this process, in three passes:

- linked: each message shares a post already linked by hand (the seed case);
- auto-link: each shares a new post whose caption names exactly one product (caption match
  against the whole catalogue, a new link, the assignment);
- manual: the conversations were set by hand, so the evidence is recorded, not applied.

Then one conversation with --events assignment events: the time to build and render the
thread's `_thread_product.html` (the newest 20 events and a count) and `explain()` (all).
No Graph call is made (captions come from the webhook), so this is database and Python time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _identities_setup import add_account, bench_app  # noqa: E402

WORDS = ["linen", "silk", "wool", "denim", "velvet", "cotton", "satin", "tweed", "leather", "suede"]
KINDS = ["dress", "scarf", "hat", "coat", "skirt", "bag", "belt", "shirt", "boot", "glove"]


def setup(app, account_id: int, n_products: int, n_messages: int) -> dict[str, list[int]]:
    from sqlalchemy import insert, select

    from inbox.extensions import db
    from inbox.models import Attachment, Conversation, Message, Post, PostProduct, Product

    now = datetime.now(timezone.utc)
    with app.app_context():
        db.session.execute(insert(Product), [
            {"account_id": account_id, "name": f"Product {i}", "sku": f"SKU-{i}", "active": True,
             "keywords": f"{WORDS[i % 10]} {KINDS[(i // 10) % 10]} {i}, code{i}x, model {i}",
             "created_at": now, "updated_at": now} for i in range(n_products)])
        product_ids = list(db.session.scalars(select(Product.id).where(Product.account_id == account_id)
                                              .order_by(Product.id)))
        groups = {}
        ts = int(now.timestamp() * 1000)
        for group in ("linked", "auto", "manual"):
            base = {"linked": 1, "auto": 2, "manual": 3}[group] * 10**7
            db.session.execute(insert(Conversation), [
                {"account_id": account_id, "customer_igsid": f"{base + i}", "unread_count": 0, "status": "open",
                 "last_message_at": now, "created_at": now, "updated_at": now,
                 **({"product_id": product_ids[0], "assignment_source": "manual", "assigned_at": now}
                    if group == "manual" else {})} for i in range(n_messages)])
            conv_ids = list(db.session.scalars(select(Conversation.id).where(
                Conversation.customer_igsid.in_([f"{base + i}" for i in range(n_messages)])).order_by(Conversation.id)))
            db.session.execute(insert(Message), [
                {"account_id": account_id, "conversation_id": c, "mid": f"mid.{group}.{i}", "direction": "in",
                 "sender_kind": "customer", "sender_igsid": f"{base + i}", "meta_timestamp": ts + i,
                 "created_at": now, "updated_at": now} for i, c in enumerate(conv_ids)])
            msg_ids = list(db.session.scalars(select(Message.id).where(Message.mid.like(f"mid.{group}.%"))
                                              .order_by(Message.id)))
            rows = []
            for i, m in enumerate(msg_ids):
                if group == "linked":  # 20 posts, each linked by hand, shared by many
                    media, caption = f"{base + i % 20}", "nothing to match here"
                else:  # a new post per message naming one product
                    k = i % n_products
                    media, caption = f"{base + 5 * 10**6 + i}", f"New in: the code{k}x, in every size"
                rows.append({"account_id": account_id, "message_id": m, "position": 0, "type": "ig_post",
                             "media_id": media, "title": caption, "created_at": now})
            db.session.execute(insert(Attachment), rows)
            if group == "linked":
                db.session.execute(insert(Post), [
                    {"account_id": account_id, "media_id": f"{base + j}", "caption": "linked", "is_own": False,
                     "seen_via": "share", "first_seen_at": now, "last_seen_at": now} for j in range(20)])
                posts = list(db.session.scalars(select(Post.id).where(Post.media_id.in_(
                    [f"{base + j}" for j in range(20)]))))
                db.session.execute(insert(PostProduct), [
                    {"account_id": account_id, "post_id": p, "product_id": product_ids[j % len(product_ids)],
                     "auto_linked": False, "linked_reason": "linked by hand", "created_at": now}
                    for j, p in enumerate(posts)])
            groups[group] = msg_ids
        db.session.commit()
    return groups


def run_pass(app, message_ids: list[int]) -> tuple[float, list[float], dict[str, int]]:
    from collections import Counter

    from inbox.services.products import assignment

    outcomes: Counter = Counter()
    times = []
    with app.app_context():
        started = time.perf_counter()
        for message_id in message_ids:
            t = time.perf_counter()
            for event in assignment.assign_from_message(message_id):
                outcomes[event.outcome] += 1
            times.append(time.perf_counter() - t)
        wall = time.perf_counter() - started
    return wall, times, dict(outcomes)


def many_events(app, account_id: int, n_events: int) -> tuple[float, float, float, int]:
    from flask import render_template
    from sqlalchemy import insert, select

    from inbox.extensions import db
    from inbox.models import AssignmentEvent, Conversation, Product
    from inbox.services.products import panel

    now = datetime.now(timezone.utc)
    with app.app_context():
        conv = db.session.scalars(select(Conversation).where(Conversation.account_id == account_id)
                                  .order_by(Conversation.id)).first()
        product_id = db.session.scalar(select(Product.id))
        db.session.execute(insert(AssignmentEvent), [
            {"account_id": account_id, "conversation_id": conv.id, "source": "post_link",
             "outcome": "assigned" if i % 3 else "kept", "product_id": product_id, "evidence_kind": "ig_post",
             "evidence_id": f"1790000000{i:07d}", "created_at": now,
             "reason": f"Assigned to Product 1 (SKU-1): the customer shared post 1790…{i:04d}, linked to it by hand "
                       f"by Ana on 12 Nov."} for i in range(n_events)])
        db.session.commit()
        conv_id = conv.id
    renders, explains = [], []
    size = 0
    for _ in range(5):
        with app.test_request_context("/"):
            conv = db.session.get(Conversation, conv_id)
            t = time.perf_counter()
            html = render_template("partials/_thread_product.html", conversation=conv)
            renders.append(time.perf_counter() - t)
            size = len(html)
            t = time.perf_counter()
            lines = panel.explain(conv)
            explains.append(time.perf_counter() - t)
            db.session.remove()
    return statistics.median(renders), statistics.median(explains), len(lines), size


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--products", type=int, default=500)
    p.add_argument("--messages", type=int, default=2000, help="messages per pass")
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--database-url", default=None, help="default: DATABASE_URL, else a temporary SQLite file")
    args = p.parse_args()
    database_url = args.database_url or os.environ.get("DATABASE_URL")
    with bench_app(database_url, WTF_CSRF_ENABLED=False) as (app, sim):
        shop = sim.add_account("bench_shop")
        account_id = add_account(app, shop)
        groups = setup(app, account_id, args.products, args.messages)
        results = {name: run_pass(app, ids) for name, ids in groups.items()}
        render_s, explain_s, lines, size = many_events(app, account_id, args.events)

    backend = "PostgreSQL" if database_url else "SQLite"
    print(f"{args.products} products, {args.messages} messages per pass, {backend}")
    ok = True
    for name, label in (("linked", "linked post (seed case)"), ("auto", "auto-link by caption"),
                        ("manual", "manual choice kept")):
        wall, times, outcomes = results[name]
        times.sort()
        p95 = times[int(len(times) * 0.95) - 1] * 1000
        print(f"{label:<26} {len(times) / wall:7.0f} messages/s  median {statistics.median(times) * 1000:5.1f} ms  "
              f"p95 {p95:5.1f} ms  outcomes {outcomes}")
        expected = {"linked": "assigned", "auto": "assigned", "manual": "kept"}[name]
        ok = ok and outcomes.get(expected) == len(times)
    print(f"why panel with {args.events} events: render {render_s * 1000:.1f} ms ({size // 1024} KiB, newest 20 shown); "
          f"explain {explain_s * 1000:.0f} ms ({lines} lines)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
