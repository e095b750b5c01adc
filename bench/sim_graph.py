"""Profile reads through GraphClient against the simulator, with simulated latency.

    .venv/bin/python bench/sim_graph.py [--calls 1000] [--threads 32] [--latency 0.05] [--rate 100]

Prints wall time, calls per second, per-call latency (p50/p95) and how many calls the
simulator throttled. --rate 0 removes both our limiter and the simulator's limit, which
shows how many calls the simulator itself serves concurrently. Uses REDIS_URL when set,
else an embedded Redis in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inbox import create_app, embedded_redis  # noqa: E402
from inbox.services.graph import GraphClient  # noqa: E402
from inbox.sim import Simulator  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--rate", type=float, default=100.0, help="profile calls/s per account (0: no limit)")
    args = p.parse_args()
    rate = args.rate or None

    with tempfile.TemporaryDirectory() as tmp:
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis_url, _ = embedded_redis.ensure_running(Path(tmp) / "redis", persist=False)
        sim = Simulator().serve()
        sim.settings.limits.profile = rate
        shop = sim.add_account("bench")
        igsids = []
        for i in range(args.calls):
            customer = shop.add_customer(f"customer{i}", name=f"Customer {i}")
            customer.sends_text("hi", deliver=False)
            igsids.append(customer.igsid)
        sim.faults.latency = args.latency
        app = create_app({"TESTING": True, "INBOX_ENV": "test", "SECRET_KEY": "x", "TOKEN_ENCRYPTION_KEY": None,
                          "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3", "REDIS_URL": redis_url,
                          "REDIS_NAMESPACE": f"bench{os.getpid()}", "GRAPH_API_BASE": sim.url,
                          "GRAPH_PROFILE_RATE": rate})
        with app.app_context():
            client = GraphClient(shop.token, ig_user_id=shop.ig_user_id)

        def one(igsid: str) -> float:
            with app.app_context():
                started = time.perf_counter()
                client.profile(igsid)
                return time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            durations = list(pool.map(one, igsids))
        wall = time.perf_counter() - started
        throttled = sum(1 for c in sim.calls if c.code is not None)
        sim.close()
        if not os.environ.get("REDIS_URL"):
            embedded_redis.stop(Path(tmp) / "redis")

    q = statistics.quantiles(durations, n=20)
    print(f"{args.calls} profile calls, {args.threads} threads, {args.latency * 1000:.0f} ms latency, "
          f"rate {rate or 'unlimited'}/s")
    print(f"wall {wall:.2f} s, {args.calls / wall:.0f} calls/s, per call p50 {statistics.median(durations) * 1000:.0f} ms"
          f" p95 {q[18] * 1000:.0f} ms, throttled by the simulator: {throttled}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
