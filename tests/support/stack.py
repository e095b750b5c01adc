"""Parts of a real deployment a test may kill: a private redis-server and `inbox worker` processes.

Only processes these helpers started are ever signalled, by their own pid or process group.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from tests.support.servers import free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
ENV_KEYS = ("DATABASE_URL", "REDIS_URL", "REDIS_NAMESPACE", "SECRET_KEY", "TOKEN_ENCRYPTION_KEY", "META_APP_SECRET",
            "META_VERIFY_TOKEN", "GRAPH_API_BASE", "GRAPH_FACEBOOK_API_BASE", "MEDIA_ROOT")


class PrivateRedis:
    """A redis-server of the test's own, without persistence: killing it loses everything."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="inbox-chaos-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_until(self.answers, timeout=10, interval=0.05, what="the private redis-server")
        return self

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: every key is gone with it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def flush(self) -> None:
        redis.Redis(port=self.port).flushall()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class WorkerProcess:
    """`inbox worker` in its own process group, sharing the test app's database and Redis."""

    def __init__(self, config: dict, instance_path, *, name: str = "chaos", extra_env: dict | None = None):
        env = dict(os.environ)
        for key in ENV_KEYS:
            if config.get(key):
                env[key] = str(config[key])
        env["INBOX_INSTANCE_PATH"] = str(instance_path)
        env.update(extra_env or {})
        self.env, self.name, self.proc = env, name, None
        self.log = tempfile.NamedTemporaryFile(mode="w+", prefix="inbox-worker-", suffix=".log", delete=False)

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "inbox.cli", "worker", "--name", self.name],
                                     env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 30) -> WorkerProcess:
        wait_until(lambda: self.alive() and "Listening on" in self.output() or self._exited(), timeout=timeout,
                   interval=0.1, what="the worker to listen")
        return self

    def _exited(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({self.proc.returncode}): {self.output()[-3000:]}")
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and every process it forked (its job, its scheduler)."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 5) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            try:  # its children may outlive a killed leader
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, TypeError, AttributeError):
                pass
        self.log.close()

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")


def eventually(check, *, timeout: float, what: str, interval: float = 0.25):
    """wait_until with the elapsed time returned (for the printed counts)."""
    started = time.monotonic()
    wait_until(check, timeout=timeout, interval=interval, what=what)
    return round(time.monotonic() - started, 1)
