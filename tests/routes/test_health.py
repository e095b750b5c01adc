import subprocess
import sys

from inbox.extensions import get_redis, rkey
from tests.support.waiting import wait_until


def test_healthz_is_public_and_reports_a_missing_worker(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["database"] == "ok"
    assert body["redis"] == "ok"
    assert body["worker"] == "no heartbeat"


def test_healthz_is_ok_while_a_real_worker_runs(app, client, app_config):
    env = _worker_env(app_config)
    proc = subprocess.Popen([sys.executable, "worker.py"], env=env)
    try:
        response = wait_until(lambda: (r := client.get("/healthz")).status_code == 200 and r, timeout=20,
                              interval=0.2, what="the worker's heartbeat")
        assert response.get_json() == {"status": "ok", "database": "ok", "applier": "ok", "redis": "ok", "worker": "ok"}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # A worker that stopped takes its heartbeat with it.
    with app.app_context():
        assert not list(get_redis().scan_iter(match=rkey("worker", "heartbeat", "*")))


def _worker_env(config):
    import os

    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL", "REDIS_NAMESPACE", "SECRET_KEY", "TOKEN_ENCRYPTION_KEY",
                 "META_APP_SECRET", "META_VERIFY_TOKEN"):
        env[name] = str(config[name])
    return env
