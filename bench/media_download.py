"""Download throughput: safe_fetch from the simulator's CDN into local storage.

    .venv/bin/python bench/media_download.py [--files 200] [--kb 300] [--threads 1,4]

Each file is a fresh simulator asset behind a lookaside-style signed link; every fetch
does the whole safe path (URL and host checks, address resolution, pinned connection,
content-type and magic check, streamed size cap, atomic write under MEDIA_ROOT). Prints
files/s, MB/s and per-file latency (p50/p95) for each thread count. No database.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inbox import create_app  # noqa: E402
from inbox.services import safe_fetch  # noqa: E402
from inbox.sim import Simulator  # noqa: E402
from inbox.sim.cdn import png  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--kb", type=int, default=300, help="size of each file")
    p.add_argument("--threads", default="1,4")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sim = Simulator().serve()
        head = png(16, 16, (120, 30, 200))
        body = head + b"\0" * max(0, args.kb * 1024 - len(head))
        app = create_app({"TESTING": True, "INBOX_ENV": "test", "SECRET_KEY": "x",
                          "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3", "REDIS_URL": "redis://127.0.0.1:1/0",
                          "MEDIA_ROOT": f"{tmp}/media", "MEDIA_REQUIRE_HTTPS": False,
                          "MEDIA_ALLOWED_HOSTS": ["127.0.0.1"], "MEDIA_PRIVATE_HOSTS": ["127.0.0.1"]})
        print(f"{args.files} files of {args.kb} KB from the simulator's CDN (127.0.0.1), local storage")
        for threads in [int(t) for t in args.threads.split(",")]:
            urls = [sim.cdn.attachment_url(sim.cdn.add("image", content=body), 3600) for _ in range(args.files)]

            def one(url: str) -> float:
                with app.app_context():
                    started = time.perf_counter()
                    result = safe_fetch.fetch(url, "image")
                    assert result.outcome == "stored", result
                    return time.perf_counter() - started

            started = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                latencies = sorted(pool.map(one, urls))
            wall = time.perf_counter() - started
            mb = args.files * len(body) / (1024 * 1024)
            p95 = latencies[int(len(latencies) * 0.95) - 1]
            print(f"threads={threads:<3} wall={wall:6.2f}s  {args.files / wall:7.1f} files/s  {mb / wall:7.1f} MB/s  "
                  f"p50={statistics.median(latencies) * 1000:6.1f} ms  p95={p95 * 1000:6.1f} ms")
        sim.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
