"""`inbox demo` as a person starts it: a process, the printed credentials, a live inbox.

It runs as an operator would run it in production: JSON logs (every line one object, and no
secret, password or customer text in any of them) and /metrics behind a token, with the
figures of the web processes and of the worker's jobs together.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from inbox import demo
from tests.support.metrics import parse, total
from tests.support.servers import free_port
from tests.support.waiting import wait_until

METRICS_TOKEN = "demo-test-metrics-token"


class DemoProcess:
    def __init__(self, tmp_path: Path) -> None:
        self.port, self.sim_port = free_port(), free_port()
        self.instance = tmp_path / "demo"
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "REDIS_URL", "INBOX_INSTANCE_PATH", "PROMETHEUS_MULTIPROC_DIR")}
        env.update(LOG_FORMAT="json", METRICS_TOKEN=METRICS_TOKEN)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inbox.cli", "demo", "--port", str(self.port), "--sim-port", str(self.sim_port),
             "--pace", "0.5", "--web-processes", "2", "--instance", str(self.instance)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Customers write every" in line:
                self.ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.proc.stdout.close()


@pytest.fixture
def running_demo(tmp_path):
    process = DemoProcess(tmp_path)
    try:
        assert process.ready.wait(90), "the demo did not start:\n" + "".join(process.lines[-40:])
        yield process
    finally:
        assert process.stop() == 0, "".join(process.lines[-40:])
    check_logs(process)


def check_logs(process: DemoProcess) -> None:
    """Every log line is one JSON object; none holds a secret, a password or what a customer wrote."""
    logged, printed = [], []
    for line in process.lines:
        (logged if line.startswith("{") else printed).append(line)
    entries = [json.loads(line) for line in logged]
    assert len(entries) > 50
    assert all({"time", "level", "logger", "message", "process"} <= set(e) for e in entries)
    assert {e["process"] for e in entries} >= {"web", "worker"}
    # What is not a log line is the banner `inbox demo` prints for the person who started it.
    assert all(not line.strip() or line.startswith("  ") or line.strip() == "Stopping…" for line in printed), printed

    secrets = json.loads((process.instance / "secrets.json").read_text())
    with sqlite3.connect(process.instance / "inbox.sqlite3") as connection:
        sealed = [row[0] for row in connection.execute("SELECT access_token_encrypted FROM accounts")]
        texts = [row[0] for row in connection.execute("SELECT text FROM messages WHERE text IS NOT NULL")]
    tokens = [Fernet(secrets["TOKEN_ENCRYPTION_KEY"].encode()).decrypt(t.encode()).decode() for t in sealed if t]
    assert tokens and len(texts) > 10
    forbidden = [*secrets.values(), *tokens, demo.ADMIN_PASSWORD, demo.AGENT_PASSWORD, METRICS_TOKEN,
                 *{t for t in texts if len(t) >= 8}]
    for line in logged:
        entry = json.loads(line)
        if entry["level"] in ("info", "warning", "error", "critical"):
            leaked = [f for f in forbidden if f in line]
            assert not leaked, (leaked, line)


def login(base_url: str, email: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(base_url + "/login")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    answer = session.post(base_url + "/login", data={"email": email, "password": password, "csrf_token": token})
    assert answer.status_code == 200 and "/login" not in answer.url, answer.text[:500]
    return session


def row_id(page: str, name: str) -> str:
    """The id of the conversation row that shows this name."""
    for match in re.finditer(r'<li[^>]*id="conversation-(\d+)"(.*?)</li>', page, re.S):
        if name in match.group(2):
            return match.group(1)
    raise AssertionError(f"no row shows {name}")


def test_demo_prints_working_credentials_and_customers_keep_writing(running_demo):
    banner = "".join(running_demo.lines)
    assert f"{demo.ADMIN_EMAIL} / {demo.ADMIN_PASSWORD}" in banner
    assert f"{demo.AGENT_EMAIL} / {demo.AGENT_PASSWORD}" in banner

    admin = login(running_demo.url, demo.ADMIN_EMAIL, demo.ADMIN_PASSWORD)
    inbox = admin.get(running_demo.url + "/")
    assert inbox.status_code == 200 and "demo.shop" in inbox.text
    agent = login(running_demo.url, demo.AGENT_EMAIL, demo.AGENT_PASSWORD)
    assert "demo.shop" in agent.get(running_demo.url + "/").text

    # The history arrived through signed webhooks, and scripted customers keep writing.
    state = requests.get(running_demo.sim_url + "/_sim/state").json()
    assert state["webhooks"]["verified"] is True
    first = state["messages"]
    assert first >= 12
    wait_until(lambda: requests.get(running_demo.sim_url + "/_sim/state").json()["messages"] > first + 2,
               timeout=30, interval=0.3)
    # The inbox lists the seeded customers by name, never as user_******: the worker's applier
    # applies the history moments after the webhooks were acknowledged, and their profiles follow.
    wait_until(lambda: all(n in admin.get(running_demo.url + "/").text for n in ("@maya.styles", "@jonas_k")),
               timeout=30, interval=0.3)
    inbox = admin.get(running_demo.url + "/")
    assert "user_" not in inbox.text

    # Shared posts assign products: one linked by hand, one auto-linked from its caption. The
    # scripted customers keep sharing posts and newer evidence replaces older, so the thread's
    # "why" panel (its decisions) is read, not only the row's current chip.
    account_path = re.search(r'/accounts/\d+', inbox.url).group(0)

    # Weeks of history (every source, answers, outcomes) fill the Insights page on first open.
    def insights() -> str:
        return agent.get(f"{running_demo.url}{account_path}/insights/?days=90").text

    def started() -> int:
        return int(re.search(r'Conversations started</span><span class="kpi-value">(\d+)', insights()).group(1))
    wait_until(lambda: started() >= 100, timeout=180, interval=2)
    def sales() -> int:
        return int(re.search(r'Sales</span><span class="kpi-value">(\d+)', insights()).group(1))
    wait_until(lambda: sales() > 0, timeout=300, interval=2)
    page = insights()
    assert "Owner&#39;s Instagram app" in page and "spring campaign" in page

    def assigned_to(name: str, product: str) -> bool:
        page = admin.get(inbox.url).text
        for m in re.finditer(r'<li[^>]*id="conversation-(\d+)".*?</li>', page, re.S):
            if name in m.group(0):
                why = admin.get(f"{running_demo.url}{account_path}/conversations/{m.group(1)}/product").text
                return product in m.group(0) or f"Assigned to {product}" in why
        return False
    wait_until(lambda: assigned_to("@maya.styles", "Red Linen Dress"), timeout=30, interval=0.3)
    wait_until(lambda: assigned_to("@lea_v", "Canvas Tote"), timeout=30, interval=0.3)

    # The team layer is there at once: a second agent, labels, saved replies, assignments and notes.
    team_page = admin.get(f"{running_demo.url}{account_path}/team").text
    assert "Cleo (agent)" in team_page and "Ben (agent)" in team_page
    assert login(running_demo.url, demo.AGENT2_EMAIL, demo.AGENT2_PASSWORD).get(running_demo.url + "/").ok
    listing = admin.get(inbox.url).text
    assert "chip-assignee" in listing and "chip-label" in listing
    assert 'value="price"' in admin.get(f"{running_demo.url}{account_path}/replies").text
    ben = login(running_demo.url, demo.AGENT_EMAIL, demo.AGENT_PASSWORD)
    mentions = ben.get(f"{running_demo.url}{account_path}/?view=mentions").text
    noted = re.search(r'id="conversation-(\d+)"', mentions)
    assert noted, "Ben has no mention"
    assert 'id="note-' in ben.get(f"{running_demo.url}{account_path}/c/{noted.group(1)}").text
    assert 'id="conversation-' in ben.get(f"{running_demo.url}{account_path}/?assignee=me").text

    # A reply typed in the inbox reaches the simulated customer, who answers.
    maya = next(c for c in state["customers"] if c["username"] == "maya.styles")
    conversation_id = row_id(inbox.text, "@maya.styles")
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', inbox.text).group(1)
    sent = admin.post(f"{running_demo.url}{account_path}/conversations/{conversation_id}/reply",
                      data={"text": "Yes, it runs true to size!", "client_token": "demo-test-1"},
                      headers={"X-CSRFToken": csrf})
    assert sent.status_code == 200, sent.text[:300]
    received = lambda: requests.get(f"{running_demo.sim_url}/_sim/customers/{maya['igsid']}/received").json()
    wait_until(lambda: any(r["text"] == "Yes, it runs true to size!" for r in received()),
               timeout=30, interval=0.3)
    thread = lambda: admin.get(f"{running_demo.url}{account_path}/c/{conversation_id}").text
    wait_until(lambda: any(t in thread() for t in demo.THANKS), timeout=30, interval=0.3)

    # Comments: the posts people commented on are listed, and the keyword rule answers a price
    # question with a private reply (the simulated commenter receives it).
    comments_page = admin.get(f"{running_demo.url}{account_path}/comments/").text
    assert 'id="comment-post-' in comments_page and "Automations" in comments_page
    rules = lambda: admin.get(f"{running_demo.url}{account_path}/automations/").text
    assert demo.DEMO_RULE["name"] in rules() and "Active" in rules()
    wait_until(lambda: "fired" in rules(), timeout=30, interval=0.5)
    dario = lambda: next(c for c in requests.get(running_demo.sim_url + "/_sim/state").json()["customers"]
                         if c["username"] == "dario.m")
    wait_until(lambda: requests.get(f"{running_demo.sim_url}/_sim/customers/{dario()['igsid']}/received").json(),
               timeout=30, interval=0.5)

    deliveries = admin.get(running_demo.url + "/admin/deliveries")
    assert deliveries.status_code == 200
    assert "Every delivery Meta sent has been applied." in deliveries.text

    # /metrics: the web processes' figures and the worker's jobs' (the reply went out from a job).
    assert requests.get(running_demo.url + "/metrics").status_code == 401
    scraped = requests.get(running_demo.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200
    figures = parse(scraped.text)
    assert total(figures, "inbox_webhook_events_total", type="message") >= 12
    assert total(figures, "inbox_replies_total", outcome="sent") >= 1
    assert total(figures, "inbox_graph_requests_total", endpoint="me/messages", status="200") >= 1
    assert total(figures, "inbox_jobs_total", task="send_message", outcome="finished") >= 1
    assert total(figures, "inbox_http_requests_total", endpoint="webhooks.receive", status="200") >= 12
