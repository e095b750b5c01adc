"""JSON log lines: one object per line, with the request id, account and delivery of their context."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inbox import logs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def json_lines(monkeypatch):
    """The JSON handler on the root logger, writing to a buffer; returns a reader of parsed lines."""
    monkeypatch.setenv("LOG_FORMAT", "json")
    stream = io.StringIO()
    handler = logs.make_handler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = logging.getLogger("inbox").level
    logging.getLogger("inbox").setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    logging.getLogger("inbox").setLevel(old_level)


def test_a_request_logs_under_the_proxy_request_id_and_sends_it_back(client, json_lines):
    answer = client.post("/webhooks/instagram", data=b"{}", headers={"X-Hub-Signature-256": "sha256=00",
                                                                     "X-Request-ID": "edge-4f2a"})
    assert answer.status_code == 403 and answer.headers["X-Request-ID"] == "edge-4f2a"
    lines = [e for e in json_lines() if e["logger"] == "inbox.routes.webhooks"]
    assert lines and lines[-1]["request_id"] == "edge-4f2a" and lines[-1]["level"] == "warning"


def test_a_request_without_a_sane_id_gets_one_made(client, json_lines):
    answer = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces <and> quotes\""})
    made = answer.headers["X-Request-ID"]
    assert len(made) == 32 and made.isalnum()
    assert client.get("/healthz").headers["X-Request-ID"] != made


def test_lines_carry_the_delivery_and_account_they_are_about(account, json_lines):
    logging.getLogger("inbox.services.ingest").info("probe outside any delivery")
    with logs.log_context(delivery_id=41, account_id=account.id):
        logging.getLogger("inbox.services.ingest").warning("probe inside")
    inside = [e for e in json_lines() if e["message"] == "probe inside"][0]
    outside = [e for e in json_lines() if e["message"] == "probe outside any delivery"][0]
    assert (inside["delivery_id"], inside["account_id"]) == (41, account.id)
    assert "delivery_id" not in outside and "account_id" not in outside


def test_secret_parameters_are_redacted_in_any_line(json_lines):
    logging.getLogger("inbox.test").info("GET /webhooks/instagram?hub.verify_token=s3cret&hub.challenge=5")
    line = json_lines()[-1]
    assert "s3cret" not in json.dumps(line) and "hub.challenge=5" in line["message"]


def test_the_cli_logs_json_lines_too(tmp_path, session_db, redis_url):
    env = {**os.environ, "LOG_FORMAT": "json", "DATABASE_URL": session_db.url, "REDIS_URL": redis_url,
           "INBOX_INSTANCE_PATH": str(tmp_path)}
    code = ("import logging; from inbox import create_app; app = create_app(); "
            "logging.getLogger('inbox.cli').warning('from the command line')")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert entries[-1]["message"] == "from the command line" and entries[-1]["process"] == "cli"
