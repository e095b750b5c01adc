"""Per-account rate limits shared through Redis: callers wait for distinct slots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from inbox.services import ratelimit

ROOT = Path(__file__).resolve().parents[2]


def test_callers_get_slots_spaced_at_the_rate(app):
    with app.app_context():
        waits = [ratelimit.acquire("conversations", "17841400000000001", 10.0, sleep=lambda s: None)
                 for _ in range(4)]
    assert waits[0] == 0
    assert waits == sorted(waits) and len(set(waits)) == 4  # each caller waits longer than the one before


def test_accounts_and_apis_have_their_own_buckets(app):
    waits = []
    with app.app_context():
        ratelimit.acquire("conversations", "1", 1.0, sleep=waits.append)
        ratelimit.acquire("conversations", "2", 1.0, sleep=waits.append)
        ratelimit.acquire("send", "1", 1.0, sleep=waits.append)
        ratelimit.acquire("conversations", "1", None, sleep=waits.append)  # no limit configured
    assert waits == []


def test_two_processes_share_the_conversations_limit(app_config, sim, connected):
    """Two worker processes calling for one account stay within Meta's 2 calls/s together."""
    alice = connected.ig.add_customer("alice")
    alice.sends_text("hi", deliver=False)
    spec = {"config": {k: v for k, v in app_config.items() if isinstance(v, (str, int, float, bool, list))},
            "token": connected.ig.token, "ig_user_id": connected.ig.ig_user_id, "calls": 3}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.support.graph_probe"], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(2)]
    try:
        for proc in procs:
            proc.stdin.write(json.dumps(spec) + "\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:  # both start calling at once
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.stdout.readline()) for proc in procs]
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(timeout=30)

    calls = sim.calls_to("conversations")
    assert results == [{"errors": []}, {"errors": []}]
    assert len(calls) == 6 and all(c.code is None for c in calls)
    assert not sim.buckets.rejected  # Meta never had to throttle
    times = sorted(c.at for c in calls)
    assert times[-1] - times[0] >= 2.0  # six calls at 2/s take 2.5 s; unshared limits would take 1 s
