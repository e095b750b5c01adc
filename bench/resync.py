"""Resync of a large account from the simulated Conversations API.

    .venv/bin/python bench/resync.py [--conversations 1000] [--messages 20] [--latency 0.02] [--rate 2]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench .venv/bin/python bench/resync.py

Each conversation has --messages messages (the customer and the owner taking turns); the
simulator answers after --latency seconds and refuses Conversations API calls past --rate
per second (Meta: 2/s); the app keeps to the same rate. The run is the real service (the
RQ job's body) in this process, first on an empty inbox, then again (it must find
nothing new). Prints wall time, Graph calls, refusals and what each run created.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _identities_setup import add_account, bench_app, graph_calls  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--conversations", type=int, default=1000)
    p.add_argument("--messages", type=int, default=20)
    p.add_argument("--latency", type=float, default=0.02)
    p.add_argument("--rate", type=float, default=2.0, help="Conversations API calls/s (Meta: 2)")
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--database-url", default=None, help="default: DATABASE_URL, else a temporary SQLite file")
    args = p.parse_args()
    database_url = args.database_url or os.environ.get("DATABASE_URL")
    with bench_app(database_url, GRAPH_CONVERSATIONS_RATE=args.rate, SYNC_PAGE_SIZE=args.page_size) as (app, sim):
        sim.settings.limits.conversations = args.rate
        shop = sim.add_account("bench_shop")
        t0 = int(time.time()) - 30 * 86400
        for c in range(args.conversations):
            customer = shop.add_customer(f"buyer{c}", name=f"Buyer {c}")
            for m in range(args.messages):
                at = t0 + c * 600 + m * 10
                if m % 2 == 0:
                    customer.sends_text(f"Question {m} about order {c}", at=at, deliver=False)
                else:
                    shop.types_in_app(customer, f"Answer {m}", at=at, deliver=False)
        account_id = add_account(app, shop)
        sim.faults.latency = args.latency

        from inbox.extensions import db
        from inbox.models import JobRun
        from inbox.services import sync

        results = []
        for label in ("first run (empty inbox)", "second run (nothing new)"):
            before = len(sim.calls_to("conversations"))
            with app.app_context():
                run, _ = sync.start_resync(account_id, enqueue_job=False)
                run_id = run.id
                started = time.perf_counter()
                sync.resync_account(run_id)
                wall = time.perf_counter() - started
                run = db.session.get(JobRun, run_id)
                results.append((label, wall, len(sim.calls_to("conversations")) - before, run.state, run.summary))
        calls, refused = graph_calls(sim, "conversations")

    backend = "PostgreSQL" if database_url else "SQLite"
    print(f"{args.conversations} conversations x {args.messages} messages, {args.latency * 1000:.0f} ms latency, "
          f"{args.rate:g} calls/s, {args.page_size} conversations per call, {backend}")
    for label, wall, run_calls, state, s in results:
        print(f"{label}: wall {wall:.1f} s, {run_calls} Graph calls, {state}; conversations {s['conversations']} "
              f"({s['created_conversations']} new), messages {s['messages']} ({s['created_messages']} new)")
    print(f"refused for the rate limit: {refused} of {calls} calls")
    ok = all(state == "finished" for _, _, _, state, _ in results) and not refused
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
