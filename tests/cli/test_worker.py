"""`inbox worker` and `python worker.py`: one command, the RQ worker on the app's queues."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from inbox.queue import all_queues, enqueue
from inbox.services.graph import WEBHOOK_FIELDS

ROOT = Path(__file__).resolve().parents[2]


def _env(app_config, **extra) -> dict[str, str]:
    names = ("DATABASE_URL", "REDIS_URL", "REDIS_NAMESPACE", "SECRET_KEY", "TOKEN_ENCRYPTION_KEY", "META_APP_SECRET",
             "META_VERIFY_TOKEN")
    return {**os.environ, **{name: str(app_config[name]) for name in names}, **extra}


def test_inbox_worker_burst_runs_what_is_queued_then_exits(sim, app, app_config, connected, tmp_path):
    connected.ig.unsubscribe()
    with app.app_context():
        enqueue("inbox.tasks.daily_check", queue="low")
    env = _env(app_config, INBOX_INSTANCE_PATH=str(tmp_path / "instance"), GRAPH_API_BASE=sim.url)
    done = subprocess.run([sys.executable, "-m", "inbox.cli", "worker", "--burst", "--name", "burst-test"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert connected.ig.subscribed_fields >= set(WEBHOOK_FIELDS["instagram"])  # the daily check ran
    with app.app_context():
        assert sum(q.count for q in all_queues()) == 0


def test_worker_py_is_the_same_command():
    def options(argv):
        text = subprocess.run([sys.executable, *argv, "--help"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout
        return text.split("Options:")[1]

    assert options(["worker.py"]) == options(["-m", "inbox.cli", "worker"])
    assert "--burst" in options(["worker.py"]) and "--name" in options(["worker.py"])
