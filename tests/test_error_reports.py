"""Sentry: only with SENTRY_DSN (nothing of it loaded otherwise), web and worker errors, personal data scrubbed."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
import sentry_sdk
from inbox import auth, create_app
from inbox.queue import enqueue
from inbox.extensions import get_redis
from inbox.queue import all_queues
from rq import SimpleWorker

app = create_app({"TESTING": False})

def boom():
    raise ZeroDivisionError("the web failed")

app.add_url_rule("/boom", "boom", boom, methods=["POST"])
auth.PUBLIC_ENDPOINTS.add("boom")
app.config["WTF_CSRF_ENABLED"] = False
client = app.test_client()
answer = client.post("/boom?access_token=SECRET-IN-QUERY", data={"password": "hunter2-password", "text": "Hi, I am Alice"},
                     headers={"Authorization": "Bearer SECRET-BEARER", "Cookie": "session=SECRET-COOKIE"})
assert answer.status_code == 500, answer.status_code
with app.app_context():
    enqueue("inbox.tasks.no_such_task", queue="default")
    SimpleWorker(all_queues(app), connection=get_redis(app)).work(burst=True)
sentry_sdk.flush(10)
"""


class Collector(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            pytest.fail("brotli-encoded envelope")
        Collector.received.append(body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def sentry_server():
    Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://public@127.0.0.1:{server.server_port}/1"
    server.shutdown()


def _env(session_db, redis_url, tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    return {**env, "DATABASE_URL": session_db.url, "REDIS_URL": redis_url, "REDIS_NAMESPACE": f"sentry{os.getpid()}",
            "INBOX_INSTANCE_PATH": str(tmp_path), **extra}


def test_without_a_dsn_nothing_of_sentry_is_loaded(session_db, redis_url, tmp_path):
    code = "import sys; from inbox import create_app; create_app(); print('sentry_sdk' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env=_env(session_db, redis_url, tmp_path), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_web_and_worker_errors_reach_sentry_without_personal_data(session_db, redis_url, tmp_path, sentry_server):
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=_env(session_db, redis_url, tmp_path, SENTRY_DSN=sentry_server))
    assert done.returncode == 0, done.stderr[-3000:]
    sent = b"\n".join(Collector.received).decode("utf-8", "replace")
    assert "the web failed" in sent and "ZeroDivisionError" in sent  # the web's error
    assert "no_such_task" in sent  # the worker's
    for secret in ("SECRET-IN-QUERY", "hunter2-password", "Hi, I am Alice", "SECRET-BEARER", "SECRET-COOKIE"):
        assert secret not in sent, secret
    events = [json.loads(line) for line in sent.splitlines() if line.startswith("{") and '"exception"' in line]
    assert events and all("vars" not in json.dumps(e) for e in events)
