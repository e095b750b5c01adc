""""Refresh identities" for a large account against the simulator.

    .venv/bin/python bench/refresh_identities.py [--people 5000] [--latency 0.05] [--rate 100] [--concurrency 8]
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench .venv/bin/python bench/refresh_identities.py

The account talks to --people customers (one conversation each); the simulator answers
every profile call after --latency seconds and refuses calls past --rate per second, as
Meta would; the app is told the same rate (GRAPH_PROFILE_RATE). The run is the real
service (the RQ job's body) in this process: threads call Meta, one thread writes.
Prints wall time, calls, calls per second, rate-limit refusals and the run's summary.
Target: 5,000 people at 50 ms and 100 calls/s in at most 60 s with no refusal.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _identities_setup import add_account, add_conversations, bench_app, graph_calls  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--people", type=int, default=5000)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--rate", type=float, default=100.0, help="profile calls/s, for the simulator and the app")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--database-url", default=None, help="default: DATABASE_URL, else a temporary SQLite file")
    args = p.parse_args()
    import os

    database_url = args.database_url or os.environ.get("DATABASE_URL")
    with bench_app(database_url, GRAPH_PROFILE_RATE=args.rate, IDENTITY_REFRESH_CONCURRENCY=args.concurrency) as (
            app, sim):
        sim.settings.limits.profile = args.rate
        shop = sim.add_account("bench_shop")
        igsids = []
        for i in range(args.people):
            customer = shop.add_customer(f"customer{i}", name=f"Customer {i}")
            customer.sends_text("hi", deliver=False)
            igsids.append(customer.igsid)
        account_id = add_account(app, shop)
        add_conversations(app, account_id, igsids)
        sim.faults.latency = args.latency

        from inbox.extensions import db
        from inbox.models import JobRun
        from inbox.services import identities

        with app.app_context():
            run, _ = identities.start_refresh(account_id, enqueue_job=False)
            run_id = run.id
            started = time.perf_counter()
            identities.refresh_identities(run_id)
            wall = time.perf_counter() - started
            run = db.session.get(JobRun, run_id)
            summary, state = run.summary, run.state
        calls, refused = graph_calls(sim, "profile")

    backend = "PostgreSQL" if database_url else "SQLite"
    print(f"{args.people} people, {args.latency * 1000:.0f} ms latency, {args.rate:g} calls/s limit, "
          f"{args.concurrency} threads, {backend}")
    print(f"wall {wall:.1f} s, {calls} profile calls ({calls / wall:.0f}/s), refused for the rate limit: {refused}")
    print(f"run {state}: refreshed {summary['refreshed']}, failed {summary['failed']}, total {summary['total']}")
    return 0 if state == "finished" and not refused else 1


if __name__ == "__main__":
    sys.exit(main())
