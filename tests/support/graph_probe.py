"""A separate process making Graph calls through GraphClient: `python -m tests.support.graph_probe`.

Reads a JSON config line on stdin (the app config, token, account id, call count), builds
the app, prints "ready", waits for "go" on stdin, makes the calls, prints a JSON result.
Used to show that rate limits are shared by every process through Redis.
"""

from __future__ import annotations

import json
import sys

from inbox import create_app
from inbox.services.graph import GraphClient, GraphError


def main() -> int:
    spec = json.loads(sys.stdin.readline())
    app = create_app(spec["config"])
    with app.app_context():
        client = GraphClient(spec["token"], ig_user_id=spec["ig_user_id"])
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        errors = []
        for _ in range(spec["calls"]):
            try:
                list(client.list_conversations(max_pages=1))
            except GraphError as exc:
                errors.append(str(exc))
    print(json.dumps({"errors": errors}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
