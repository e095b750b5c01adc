import subprocess
import sys
from datetime import timedelta

from sqlalchemy import update

from inbox.extensions import db, get_redis, rkey
from inbox.models import Message, utcnow
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
        assert response.get_json() == {"status": "ok", "database": "ok", "applier": "ok", "redis": "ok", "worker": "ok",
                                       "work": "ok"}
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


def test_healthz_is_not_ok_while_owed_work_is_overdue(app, client, factory, account):
    with app.app_context():
        get_redis().set(rkey("worker", "heartbeat", "health-test"), "1", ex=30)  # a worker beats
    conversation = factory.conversation(account, messages=["hi"])
    factory.message(conversation, "stuck", out=True, status="pending")
    assert client.get("/healthz").get_json()["work"] == "ok"  # just written: not due yet
    with app.app_context():
        db.session.execute(update(Message).where(Message.status == "pending").values(
            created_at=utcnow() - timedelta(minutes=5), updated_at=utcnow() - timedelta(minutes=5)))
        db.session.commit()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["work"].startswith("overdue: reply")
