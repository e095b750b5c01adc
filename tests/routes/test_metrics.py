"""/metrics: off without a token, refused without the right one, and figures Prometheus can parse."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from inbox import metrics
from inbox.extensions import db
from inbox.models import Conversation
from inbox.queue import enqueue
from inbox.services import sending
from tests.support.live import LiveSocket, session_cookie
from tests.support.metrics import TOKEN, scrape, total, value
from tests.support.waiting import wait_until
from tests.support.webhooks import ACCOUNT, envelope, message, post

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_config(app_config):
    app_config["METRICS_TOKEN"] = TOKEN
    app_config["SEND_RETRY_INTERVALS"] = [0]
    return app_config


def test_metrics_are_off_without_a_token(app_config, client):
    client.application.config["METRICS_TOKEN"] = None
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
def test_metrics_need_the_bearer_token(client, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "inbox_" not in response.get_data(as_text=True)


def test_webhooks_logins_and_state_are_counted(client, account, factory):
    before = scrape(client)
    assert post(client, envelope(message("m-metrics-1", "Hello", customer="9911"))).status_code == 200
    assert client.post("/webhooks/instagram", data=b"{}",
                       headers={"X-Hub-Signature-256": "sha256=00"}).status_code == 403
    user = factory.staff_on(account, "agent")
    assert client.post("/login", data={"email": user.email, "password": "not it"}).status_code == 401
    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("inbox_webhook_events_total", type="message", outcome="created") == 1
    assert grew("inbox_webhook_deliveries_total", status="processed") == 1
    assert grew("inbox_http_requests_total", endpoint="webhooks.receive", method="POST", status="200") == 1
    assert grew("inbox_http_requests_total", endpoint="webhooks.receive", method="POST", status="403") == 1
    assert grew("inbox_webhook_apply_lag_seconds_count") == 1
    assert grew("inbox_login_attempts_total", outcome="failure") == 1
    # State read at scrape time: this test's tables and queues.
    assert value(after, "inbox_webhook_deliveries", status="processed") == 1
    assert value(after, "inbox_accounts", status="active") == 1
    assert {"high", "default", "low"} <= {dict(labels)["queue"] for name, labels in after
                                          if name == "inbox_queue_jobs"}
    for kind in ("reply", "media", "profile", "delivery", "check"):
        assert value(after, "inbox_obligations_overdue", kind=kind) == 0
    # No label names a person or an account.
    for name, labels in after:
        for _, label_value in labels:
            assert "9911" not in label_value and ACCOUNT not in label_value, (name, labels)


def test_graph_calls_replies_and_rate_limit_waits_are_counted(app, client, sim_webhooks, connected, run_jobs, sim):
    customer = connected.ig.add_customer("carla", name="Carla")
    assert customer.sends_text("Is it in stock?").delivery.status == 200
    run_jobs()
    before = scrape(client)
    with app.app_context():
        account_id, conversation_id = db.session.execute(select(Conversation.account_id, Conversation.id)).one()
        sending.queue_reply(account_id, conversation_id, None, "Yes!", uuid.uuid4().hex)
    run_jobs()
    sim.fail_next("send", 10, 2534022)  # outside the window: final
    with app.app_context():
        sending.queue_reply(account_id, conversation_id, None, "Still there?", uuid.uuid4().hex)
    run_jobs()
    after = scrape(client)

    def grew(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("inbox_replies_total", outcome="sent") == 1
    assert grew("inbox_replies_total", outcome="failed", error_code="10") == 1
    assert grew("inbox_graph_requests_total", endpoint="me/messages", method="POST", status="200") == 1
    assert grew("inbox_graph_requests_total", endpoint="me/messages", method="POST", status="400") == 1
    assert grew("inbox_graph_ratelimit_wait_seconds_count", bucket="send") == 2
    assert grew("inbox_jobs_total") == 0  # jobs run by the test's own worker are RQ's, not ours
    for name, labels in after:
        for _, label_value in labels:
            assert customer.igsid not in label_value and connected.account.ig_user_id not in label_value


def test_a_worker_process_counts_in_the_same_figures(app, app_config, client, tmp_path):
    """`inbox worker` (its job processes included) writes where the web process reads."""
    before = scrape(client)
    with app.app_context():
        enqueue("inbox.tasks.recovery", queue="default")
    names = ("DATABASE_URL", "REDIS_URL", "REDIS_NAMESPACE", "SECRET_KEY", "TOKEN_ENCRYPTION_KEY", "META_APP_SECRET",
             "META_VERIFY_TOKEN")
    env = {**os.environ, **{name: str(app_config[name]) for name in names},
           "INBOX_INSTANCE_PATH": str(tmp_path / "instance"), metrics.DIR_VARIABLE: os.environ[metrics.DIR_VARIABLE]}
    done = subprocess.run([sys.executable, "-m", "inbox.cli", "worker", "--burst", "--name", "metrics-test"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after = scrape(client)
    assert value(after, "inbox_jobs_total", task="recovery", outcome="finished") - \
        value(before, "inbox_jobs_total", task="recovery", outcome="finished") == 1


def test_graph_endpoints_are_low_cardinality():
    assert metrics.graph_endpoint("/v24.0/me/messages") == "me/messages"
    assert metrics.graph_endpoint("/v24.0/aWdfZAG06MTpJR01lc3NhZA2VJZAD") == "{id}"
    assert metrics.graph_endpoint("/v24.0/17841400000/subscribed_apps") == "{id}/subscribed_apps"
    assert metrics.graph_endpoint("/refresh_access_token") == "refresh_access_token"


def test_the_grafana_dashboard_reads_only_metrics_that_exist():
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    source = (ROOT / "inbox" / "metrics.py").read_text()
    names = {re.sub(r"_(bucket|sum|count)$", "", n) for e in exprs for n in re.findall(r"\binbox_[a-z_]+", e)}
    assert names and all(f'"{name}"' in source for name in names), names


def test_open_websockets_are_counted_while_open(client, agent, live_server):
    # Sockets of other tests may still be closing: the count goes up by ours, then down by ours.
    socket = LiveSocket(live_server.url, session_cookie(client))
    socket.wait_for('id="live-state"')  # subscribed
    wait_until(lambda: value(scrape(client), "inbox_websockets_open") >= 1, timeout=10)
    while_open = value(scrape(client), "inbox_websockets_open")
    socket.ws.close()
    wait_until(lambda: value(scrape(client), "inbox_websockets_open") <= while_open - 1, timeout=10)
