"""`inbox run`: migrations, then the web server and one worker, stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from flask_migrate import upgrade

from . import create_app, embedded_redis, metrics


def apply_migrations(app) -> None:
    with app.app_context():
        upgrade()


def start_processes(*, host: str, port: int, threads: int, env: dict[str, str],
                    workers: int = 1, web_processes: int = 1) -> list[subprocess.Popen]:
    """Start gunicorn (gthread) and the RQ worker(s) as children."""
    conf = Path(__file__).with_name("gunicorn_conf.py")
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(conf), "-b", f"{host}:{port}",
         "--workers", str(web_processes), "--threads", str(threads), "inbox:create_app()"],
        env=env,
    )
    procs = [web]
    for _ in range(workers):
        procs.append(subprocess.Popen([sys.executable, "-m", "inbox.cli", "worker"], env=env))
    return procs


def wait_healthy(url: str, procs: list[subprocess.Popen], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            response = requests.get(url + "/healthz", timeout=1)
            if response.status_code == 200:
                return True
            # Up, with work owed from before it started: the worker is on it (it needs no person).
            body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
            if all(body.get(part) == "ok" for part in ("database", "redis", "worker")):
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


def stop_processes(procs: list[subprocess.Popen], timeout: float = 15) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(*, host: str = "127.0.0.1", port: int = 5000, threads: int = 64, app=None,
        before_serving=None, after_start=None, banner_extra: str = "", web_processes: int = 1) -> int:
    """Run until Ctrl-C or SIGTERM; returns the exit status.

    `before_serving(app, env)` runs after the migrations and before the processes start;
    `after_start(base_url)` once the web server answers (the demo wires its simulator there).
    """
    app = app or create_app()
    env = dict(os.environ)
    started_redis = None
    if not app.config.get("REDIS_URL"):
        base = Path(app.instance_path) / "redis"
        url, started = embedded_redis.ensure_running(base)
        app.config["REDIS_URL"] = url
        started_redis = base if started else None
    env["REDIS_URL"] = app.config["REDIS_URL"]
    env["DATABASE_URL"] = app.config["DATABASE_URL"]
    for name in ("SECRET_KEY", "TOKEN_ENCRYPTION_KEY", "META_APP_SECRET", "META_VERIFY_TOKEN"):
        env.setdefault(name, app.config[name])
    # Every process started here counts in one directory, emptied of earlier runs' files.
    env[metrics.DIR_VARIABLE] = metrics.prepare_directory(
        metrics.OPERATOR_DIRECTORY or str(Path(app.instance_path) / "prometheus"))

    stopping = False

    def _stop(signum, frame):
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen] = []
    status = 0
    try:
        apply_migrations(app)
        if before_serving:
            before_serving(app, env)
        procs = start_processes(host=host, port=port, threads=threads, env=env, web_processes=web_processes)
        base_url = f"http://{host}:{port}"
        if not wait_healthy(base_url, procs):
            print("The inbox did not become healthy; see the log above.", file=sys.stderr)
            status = 1
        else:
            if after_start:
                after_start(base_url)
            print(f"\n  Inbox running at {base_url}/  (Ctrl-C to stop)\n{banner_extra}", flush=True)
            while not stopping:
                if any(p.poll() is not None for p in procs):
                    print("A process exited; stopping.", file=sys.stderr)
                    status = 1
                    break
                time.sleep(0.25)
    finally:
        print("Stopping…", flush=True)
        stop_processes(procs)
        if started_redis is not None:
            embedded_redis.stop(started_redis)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
