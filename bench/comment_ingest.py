"""Comment ingestion throughput, measured exactly like messages (bench/webhook_ingest.py).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/2 \\
        .venv/bin/python bench/comment_ingest.py --start --seconds 8

The same server, client, phases and figures as webhook_ingest.py (run with the same
options), but each delivery carries `changes[]` comments on the account's posts (one entry
per delivery, `time` in seconds as Meta sends it): new comments from --customers
commenters on 20 posts, one in ten a reply to an earlier comment. Default phases: single
and batch (events/s in batches of --batch). Every request goes to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import sys

import webhook_ingest

POSTS = 20


def comment_delivery(run: str, n: int, events: int, customers: int, account: str) -> bytes:
    """One delivery of `events` new comments, as Meta writes it (compact, escaped)."""
    changes = []
    for i in range(events):
        k = n * events + i
        value = {"id": f"1790{abs(hash(run)) % 10**6:06d}{k:09d}",
                 "from": {"id": str(9300000000000000 + k % customers), "username": f"commenter{k % customers}"},
                 "media": {"id": str(18000000000000000 + k % POSTS), "media_product_type": "FEED"},
                 "text": f"Price of item {k % 97} in size M? 😍"}
        if k % 10 == 9:
            value["parent_id"] = f"1790{abs(hash(run)) % 10**6:06d}{k - 1:09d}"
        changes.append({"field": "comments", "value": value})
    body = {"object": "instagram", "entry": [{"id": account, "time": webhook_ingest.T0 // 1000 + n,
                                              "changes": changes}]}
    return json.dumps(body, separators=(",", ":")).replace("/", "\\/").encode()


if __name__ == "__main__":
    webhook_ingest.delivery = comment_delivery
    if not any(arg.startswith("--phases") for arg in sys.argv[1:]):
        sys.argv += ["--phases", "single,batch"]
    raise SystemExit(webhook_ingest.main())
