"""Real HTTP servers for tests: the inbox in a thread, or in its own gunicorn process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import requests
from werkzeug.serving import make_server

from tests.support.waiting import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadedServer:
    """A threaded werkzeug server (websockets work) serving a WSGI app on 127.0.0.1."""

    def __init__(self, wsgi_app, port: int | None = None):
        self.port = port or free_port()
        self.server = make_server("127.0.0.1", self.port, wsgi_app, threaded=True)
        self.server.daemon_threads = True
        # A short poll interval: stop() waits for the loop to notice, up to one interval.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class GunicornServer:
    """The inbox in its own gunicorn process (gthread, one worker), as production runs it.

    `config` is the test app's mapping; the strings the environment can carry go to the
    child, so it shares the test's database, Redis namespace and secrets (a session cookie
    from the test client is valid there). stop() sends SIGTERM, as a deploy does.
    """

    ENV_KEYS = ("INBOX_ENV", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "REDIS_NAMESPACE", "META_APP_SECRET",
                "META_VERIFY_TOKEN", "META_APP_ID", "META_INSTAGRAM_APP_ID", "GRAPH_API_BASE",
                "GRAPH_FACEBOOK_API_BASE", "OAUTH_AUTHORIZE_URL", "OAUTH_TOKEN_URL", "TOKEN_ENCRYPTION_KEY",
                "MEDIA_ROOT")

    def __init__(self, config: dict, instance_path, *, threads: int = 32, port: int | None = None,
                 extra_env: dict | None = None):
        self.port = port or free_port()
        root = Path(__file__).resolve().parents[2]
        env = dict(os.environ)
        for key in self.ENV_KEYS:
            if config.get(key):
                env[key] = str(config[key])
        env["INBOX_INSTANCE_PATH"] = str(instance_path)
        env["WEB_GRACEFUL_TIMEOUT"] = "5"
        env.update(extra_env or {})
        self.command = [sys.executable, "-m", "gunicorn", "-c", str(root / "inbox" / "gunicorn_conf.py"),
                        "-b", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", str(threads),
                        "inbox:create_app()"]
        self.env, self.cwd, self.proc = env, root, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> GunicornServer:
        # A file, not a pipe: nobody reads a pipe while the test runs, and a full one blocks the server.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(self.command, env=self.env, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                     stderr=self.log, text=True)
        try:
            wait_until(self._answers, timeout=timeout, interval=0.1, what="gunicorn to answer /healthz")
        except AssertionError:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            self.log.seek(0)
            raise RuntimeError(f"gunicorn exited: {self.log.read()[-3000:]}")
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code in (200, 503)
        except requests.RequestException:
            return False

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode

    def log_text(self) -> str:
        """What the server wrote to stderr so far (for failure messages)."""
        if self.log.closed:
            return ""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()
