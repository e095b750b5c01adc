"""The simulator as its own process (`python -m inbox.sim`), as the demo and benchmarks run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.servers import ThreadedServer, free_port
from tests.support.waiting import wait_until
from tests.support.webhooks import Receiver

ROOT = Path(__file__).resolve().parents[2]


def test_standalone_simulator_verifies_and_delivers_in_the_background():
    receiver = Receiver("proc-secret", "proc-token")
    server = ThreadedServer(receiver).start()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "inbox.sim", "--port", str(port), "--callback", f"{server.url}/hook",
         "--verify-token", "proc-token", "--app-secret", "proc-secret", "--account", "procshop:TOKEN123"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        started = json.loads(proc.stdout.readline())
        assert started["url"] == f"http://127.0.0.1:{port}"
        [account] = started["accounts"]
        assert account["username"] == "procshop" and account["token"] == "TOKEN123"
        assert json.loads(proc.stdout.readline()) == {"handshake": "ok"}

        control = f"{started['url']}/_sim"
        customer = requests.post(f"{control}/accounts/{account['ig_user_id']}/customers",
                                 json={"username": "dora"}, timeout=5).json()
        requests.post(f"{control}/customers/{customer['igsid']}/actions",
                      json={"action": "sends_text", "text": "Bonjour ☀️"}, timeout=5).raise_for_status()
        wait_until(lambda: receiver.posts, what="the delivery")  # sent in the background

        [post] = receiver.posts
        assert post["valid"]
        assert receiver.events()[0]["message"]["text"] == "Bonjour ☀️"
        me = requests.get(f"{started['url']}/v24.0/me", params={"fields": "user_id"},
                          headers={"Authorization": "Bearer TOKEN123"}, timeout=5).json()
        assert me["user_id"] == account["ig_user_id"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.stop()
    assert proc.returncode == 0
