"""Live latency: from the webhook POST to the websocket frame at a connected client.

    .venv/bin/python bench/live_latency.py                      # SQLite file + embedded Redis
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/2 \\
        .venv/bin/python bench/live_latency.py

Two gunicorn processes (inbox/gunicorn_conf.py, gthread, one worker each) share one Redis
and one database, as two web processes behind a load balancer do. --sockets staff sockets
(default 200) are spread over both, all listening to the same account. Signed webhook
deliveries of one new customer message each are POSTed at --rate per second (default 100,
open loop, alternating between the processes) for --seconds. Each message carries a token;
one probe socket on each process parses frames and notes when the message.created frame
with that token arrives. The other sockets read and discard their bytes (they must read,
or the server would count them as too far behind), so the client's own work stays small.

Latency = arrival at the probe - the moment the POST began. Printed: p50/p90/p99/max per
probe and overall (targets: p50 <= 15 ms, p99 <= 60 ms), frames lost, and the POST times.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACCOUNT = "17841400000000077"
PASSWORD = "bench password 123"
TOKEN = re.compile(r"livebench-(\d+)-x")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Setup: database, account, staff, two gunicorn processes --------------------------------

class Deployment:
    def __init__(self, args):
        from cryptography.fernet import Fernet

        self.instance = tempfile.mkdtemp(prefix="inbox-live-bench-")
        self.secret = secrets.token_hex(16)
        self.pg_admin = None
        base = os.environ.get("DATABASE_URL", "")
        if base.startswith(("postgres://", "postgresql")):
            import sqlalchemy as sa
            from sqlalchemy.engine import make_url

            from inbox.config import normalize_database_url

            self.pg_admin = make_url(normalize_database_url(base))
            self.db_name = f"inbox_live_bench_{os.getpid()}"
            engine = sa.create_engine(self.pg_admin, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{self.db_name}"'))
            engine.dispose()
            database_url = self.pg_admin.set(database=self.db_name).render_as_string(hide_password=False)
        else:
            database_url = f"sqlite:///{self.instance}/bench.sqlite3"
        redis_url = os.environ.get("REDIS_URL")
        self.redis_base = None
        if not redis_url:
            from inbox import embedded_redis

            self.redis_base = Path(self.instance) / "redis"
            redis_url, _ = embedded_redis.ensure_running(self.redis_base, persist=False)
        self.config = {
            "INBOX_ENV": "production", "SECRET_KEY": secrets.token_hex(16), "DATABASE_URL": database_url,
            "REDIS_URL": redis_url, "REDIS_NAMESPACE": f"livebench{os.getpid()}", "META_APP_SECRET": self.secret,
            "META_VERIFY_TOKEN": secrets.token_hex(8), "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        }
        self.dialect = "postgresql" if self.pg_admin else "sqlite"
        self._prepare()
        env = {**os.environ, **self.config, "INBOX_INSTANCE_PATH": self.instance,
               "WEB_THREADS": str(args.sockets // 2 + 32), "WEB_GRACEFUL_TIMEOUT": "5"}
        self.servers = []
        for _ in range(2):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "inbox/gunicorn_conf.py", "-b", f"127.0.0.1:{port}",
                 "--workers", "1", "--threads", env["WEB_THREADS"], "inbox:create_app()"],
                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.servers.append((port, proc))
        for port, proc in self.servers:
            self._wait(port, proc)

    def _prepare(self):
        from flask_migrate import upgrade

        from inbox import create_app
        from inbox.extensions import db
        from inbox.services import accounts, staff

        app = create_app(dict(self.config, INBOX_ENV="development"))
        with app.app_context():
            upgrade()
            account = accounts.add_account(ACCOUNT, "benchshop", token="TOKEN")
            user = staff.create_user("bench@example.com", PASSWORD, name="Bench")
            staff.grant(user.id, account.id, "agent")
            self.account_id = account.id
            db.session.remove()
            db.engine.dispose()

    @staticmethod
    def _wait(port, proc):
        deadline = time.time() + 40
        while time.time() < deadline:
            if proc.poll() is not None:
                raise SystemExit("gunicorn exited at start")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                c.getresponse().read()
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("gunicorn did not start")

    def login_cookie(self) -> str:
        port = self.servers[0][0]
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/login")
        r = c.getresponse()
        html = r.read().decode()
        cookie = r.getheader("Set-Cookie", "").split(";")[0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
            r'<meta name="csrf-token" content="([^"]+)"', html)
        body = f"email=bench%40example.com&password={PASSWORD.replace(' ', '+')}&csrf_token={token.group(1)}"
        c.request("POST", "/login", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        r = c.getresponse()
        r.read()
        if r.status != 302:
            raise SystemExit(f"login failed: HTTP {r.status}")
        return r.getheader("Set-Cookie").split(";")[0]

    def stop(self):
        for _, proc in self.servers:
            proc.terminate()
        for _, proc in self.servers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.pg_admin is not None:
            import sqlalchemy as sa

            engine = sa.create_engine(self.pg_admin, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
            engine.dispose()
        if self.redis_base is not None:
            from inbox import embedded_redis

            embedded_redis.stop(self.redis_base)


# --- Sockets ---------------------------------------------------------------------------------

def raw_socket(port: int, cookie: str, account_id: int) -> socket.socket:
    """A websocket handshake by hand; the socket is then only drained."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /live?account={account_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Cookie: {cookie}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("socket refused")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"socket refused: {head[:80]!r}")
    s.setblocking(False)
    return s


class Drain(threading.Thread):
    def __init__(self, sockets):
        super().__init__(daemon=True)
        self.sel = selectors.DefaultSelector()
        for s in sockets:
            self.sel.register(s, selectors.EVENT_READ)
        self.bytes = 0
        self.stopping = False

    def run(self):
        while not self.stopping:
            for key, _ in self.sel.select(timeout=0.5):
                try:
                    data = key.fileobj.recv(1 << 16)
                    self.bytes += len(data)
                except BlockingIOError:
                    pass


class Probe(threading.Thread):
    def __init__(self, port: int, cookie: str, account_id: int):
        import websocket

        super().__init__(daemon=True)
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/live?account={account_id}",
                                              cookie=cookie, timeout=30)
        self.arrived: dict[int, float] = {}
        self.stopping = False
        self.ready = threading.Event()

    def run(self):
        import websocket

        self.ws.settimeout(0.5)
        while not self.stopping:
            try:
                frame = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:
                return
            now = time.perf_counter()
            if 'id="live-state"' in frame:
                self.ready.set()
            for match in TOKEN.finditer(frame):
                self.arrived.setdefault(int(match.group(1)), now)


# --- Webhooks -------------------------------------------------------------------------------

def body_for(n: int, customers: int) -> bytes:
    ts = 1767225600000 + n
    customer = str(9400000000000000 + n % customers)
    payload = {"object": "instagram", "entry": [{"id": ACCOUNT, "time": ts, "messaging": [{
        "sender": {"id": customer}, "recipient": {"id": ACCOUNT}, "timestamp": ts,
        "message": {"mid": f"livebench-mid-{os.getpid()}-{n}", "text": f"Hello livebench-{n}-x, in M?"}}]}]}
    return json.dumps(payload, separators=(",", ":")).encode()


def send_paced(ports, secret: str, rate: float, seconds: float, customers: int, start_n: int = 0):
    total = int(rate * seconds)
    sent_at: dict[int, float] = {}
    post_ms: list[float] = []
    lock = threading.Lock()
    next_n = [start_n]
    t0 = time.perf_counter() + 0.2

    def worker():
        conns = {p: http.client.HTTPConnection("127.0.0.1", p, timeout=30) for p in ports}
        while True:
            with lock:
                n = next_n[0]
                if n >= start_n + total:
                    return
                next_n[0] += 1
            due = t0 + (n - start_n) / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            body = body_for(n, customers)
            digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            port = ports[n % len(ports)]
            began = time.perf_counter()
            sent_at[n] = began
            try:
                conns[port].request("POST", "/webhooks/instagram", body=body, headers={
                    "Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"})
                conns[port].getresponse().read()
            except OSError:
                conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            post_ms.append((time.perf_counter() - began) * 1000)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sent_at, post_ms


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sockets", type=int, default=200)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--customers", type=int, default=50)
    args = p.parse_args()

    deployment = Deployment(args)
    try:
        cookie = deployment.login_cookie()
        ports = [port for port, _ in deployment.servers]
        probes = [Probe(port, cookie, deployment.account_id) for port in ports]
        for probe in probes:
            probe.start()
        passive = [raw_socket(ports[i % 2], cookie, deployment.account_id) for i in range(args.sockets - 2)]
        drain = Drain(passive)
        drain.start()
        for probe in probes:
            if not probe.ready.wait(10):
                raise SystemExit("a probe socket never became live")
        # Warm up: a few events so both processes have rendered once.
        send_paced(ports, deployment.secret, 20, 1, args.customers, start_n=10_000_000)
        time.sleep(1)

        sent_at, post_ms = send_paced(ports, deployment.secret, args.rate, args.seconds, args.customers)
        time.sleep(2)
        for probe in probes:
            probe.stopping = True
        drain.stopping = True

        print(f"live latency: {args.sockets} sockets on 2 gunicorn processes, {args.rate:g} events/s for "
              f"{args.seconds:g}s, {deployment.dialect}, Redis pub/sub")
        everything: list[float] = []
        for i, probe in enumerate(probes):
            latencies = [(probe.arrived[n] - sent_at[n]) * 1000 for n in sent_at if n in probe.arrived]
            missing = sum(1 for n in sent_at if n not in probe.arrived)
            everything += latencies
            print(f"  probe on process {i + 1}: n={len(latencies)} lost={missing}  p50={pct(latencies, 50):.1f} ms  "
                  f"p90={pct(latencies, 90):.1f}  p99={pct(latencies, 99):.1f}  max={max(latencies or [0]):.1f}")
        print(f"  all: p50={pct(everything, 50):.1f} ms  p99={pct(everything, 99):.1f} ms   (targets 15 / 60)")
        print(f"  webhook POST answered: p50={pct(post_ms, 50):.1f} ms  p99={pct(post_ms, 99):.1f} ms; "
              f"passive sockets read {drain.bytes / 1e6:.1f} MB")
    finally:
        deployment.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
