"""`inbox run` on embedded defaults: migrations, web, worker, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.servers import free_port
from tests.support.waiting import wait_until


def test_inbox_run_starts_everything_and_stops_cleanly(tmp_path):
    instance = tmp_path / "instance"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["INBOX_INSTANCE_PATH"] = str(instance)
    inbox = Path(sys.executable).with_name("inbox")
    proc = subprocess.Popen([str(inbox), "run", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def healthy() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout=60, interval=0.3, what="inbox run to answer /healthz with 200")
        # First visit: setup page, served from the migrated SQLite file under instance/.
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.url.endswith("/setup") and "Create administrator" in page.text
        assert (instance / "inbox.sqlite3").exists()
        assert (instance / "redis" / "redis.sock").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert f"Inbox running at http://127.0.0.1:{port}/" in output
    # The embedded Redis it started is gone with it.
    assert not (instance / "redis" / "redis.sock").exists()
