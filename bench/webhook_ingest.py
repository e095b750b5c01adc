"""Webhook ingestion throughput and latency against a real gunicorn server on PostgreSQL.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/2 \\
        .venv/bin/python bench/webhook_ingest.py --start

--start creates a throwaway PostgreSQL database, migrates it, adds the account and runs
gunicorn (inbox/gunicorn_conf.py, gthread) on a free port; without it, give --url and
--secret of a server you started yourself (its account must be --account). Every request
goes to 127.0.0.1 only, and every phase is bounded in time.

Phases, each for --seconds:
  healthz     the same server's bare GET /healthz rate (closed loop, --concurrency clients)
  single      signed deliveries of one new message each (closed loop)
  batch       signed deliveries of --batch messages each (closed loop): events/s
  paced       single-event deliveries sent at --rate per second (open loop); latency is
              measured from the moment each request was due, so a slow server shows.

Beside rate and latency it prints the CPU the server side spent per request (gunicorn
workers plus this database's PostgreSQL backends, from /proc), which other work on a
shared machine disturbs far less than wall-clock rates.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import queue
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "17841400000000001"
T0 = 1767225600000


# --- Payloads -------------------------------------------------------------------------

def delivery(run: str, n: int, events: int, customers: int, account: str) -> bytes:
    """One delivery of `events` customer messages, as Meta writes it (compact, escaped)."""
    entries = []
    for i in range(events):
        k = n * events + i
        customer = str(9300000000000000 + k % customers)
        entries.append({"id": account, "time": T0 + k, "messaging": [{
            "sender": {"id": customer}, "recipient": {"id": account}, "timestamp": T0 + k,
            "message": {"mid": f"bench-{run}-{k}", "text": f"Is item {k % 97} still available in size M?"}}]})
    body = {"object": "instagram", "entry": entries}
    return json.dumps(body, separators=(",", ":")).replace("/", "\\/").encode()


def signed(body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


# --- HTTP client: one keep-alive connection per thread -------------------------------------

class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> int:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return response.status
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def closed_loop(url: str, make_request, concurrency: int, seconds: float) -> tuple[list[float], dict[int, int]]:
    """`concurrency` clients send back to back for `seconds`; returns latencies and status counts."""
    parts = urlsplit(url)
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client(worker: int):
        conn = Connection(parts.hostname, parts.port)
        mine: list[float] = []
        counts: dict[int, int] = {}
        n = 0
        while time.perf_counter() < deadline:
            method, path, body, headers = make_request(worker, n)
            start = time.perf_counter()
            status = conn.request(method, path, body, headers)
            mine.append(time.perf_counter() - start)
            counts[status] = counts.get(status, 0) + 1
            n += 1
        with lock:
            latencies.extend(mine)
            for k, v in counts.items():
                statuses[k] = statuses.get(k, 0) + v

    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses


def paced(url: str, bodies: list[bytes], secret: str, rate: float, seconds: float, pool: int = 48):
    """Send at a fixed rate (open loop); latency counts from when each request was due."""
    parts = urlsplit(url)
    due_queue: queue.Queue = queue.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    total = int(rate * seconds)

    def worker():
        conn = Connection(parts.hostname, parts.port)
        while True:
            item = due_queue.get()
            if item is None:
                return
            due, body = item
            status = conn.request("POST", "/webhooks/instagram", body, signed(body, secret))
            elapsed = time.perf_counter() - due
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(pool)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        due_queue.put((due, bodies[i % len(bodies)]))
    for _ in threads:
        due_queue.put(None)
    for t in threads:
        t.join()
    return latencies, statuses, time.perf_counter() - start


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def server_pids(gunicorn_pid: int | None, database: str | None) -> list[int]:
    """The gunicorn workers and this database's PostgreSQL backends (other sessions' are not ours)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if (gunicorn_pid and ppid == gunicorn_pid) or (database and database in cmdline and "postgres" in cmdline):
            pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds used by the server side (workers + our PostgreSQL backends) and by this client."""

    def __init__(self, gunicorn_pid: int | None, database: str | None):
        self.gunicorn_pid, self.database = gunicorn_pid, database
        self.hz = os.sysconf("SC_CLK_TCK")

    def sample(self) -> tuple[dict[int, int], float]:
        return ({pid: _ticks(pid) for pid in server_pids(self.gunicorn_pid, self.database)},
                time.process_time())

    def since(self, start) -> tuple[float, float]:
        before, client_before = start
        now, client_now = self.sample()
        server = sum(now[pid] - before.get(pid, 0) for pid in now) / self.hz
        if os.environ.get("BENCH_CPU_SPLIT"):
            workers = set(server_pids(self.gunicorn_pid, None))
            web = sum(now[pid] - before.get(pid, 0) for pid in now if pid in workers) / self.hz
            print(f"    (web workers {web:.2f} s, PostgreSQL {server - web:.2f} s)")
        return server, client_now - client_before


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000


# --- A server of our own -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BenchServer:
    """A throwaway PostgreSQL database, migrated, with one account, served by gunicorn."""

    def __init__(self, base_url: str, redis_url: str, workers: int, threads: int):
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url

        sys.path.insert(0, str(ROOT))
        from inbox.config import normalize_database_url

        self.sa = sa
        self.admin_url = make_url(normalize_database_url(base_url))
        self.name = f"inbox_bench_{os.getpid()}"
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        engine.dispose()
        self.secret = secrets.token_hex(16)
        self.instance = tempfile.mkdtemp(prefix="inbox-bench-")
        self.env = {
            **os.environ,
            "DATABASE_URL": self.admin_url.set(database=self.name).render_as_string(hide_password=False),
            "REDIS_URL": redis_url, "REDIS_NAMESPACE": f"bench{os.getpid()}",
            "INBOX_ENV": "production", "INBOX_INSTANCE_PATH": self.instance,
            "SECRET_KEY": secrets.token_hex(16), "META_APP_SECRET": self.secret,
            "META_VERIFY_TOKEN": secrets.token_hex(8),
            "TOKEN_ENCRYPTION_KEY": "bAp1n7sI0b1j8mJ4bH3lR0rQ9hZ9f8B7yT6nC5vX4kE=",
            "WEB_CONCURRENCY": str(workers), "WEB_THREADS": str(threads),
        }
        bin_dir = Path(sys.executable).parent
        flask = [str(bin_dir / "flask"), "--app", "inbox"]
        subprocess.run([*flask, "db", "upgrade"], env=self.env, cwd=ROOT, check=True, capture_output=True)
        subprocess.run([*flask, "accounts", "add", ACCOUNT, "--username", "bench"], env=self.env, cwd=ROOT,
                       check=True, capture_output=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(bin_dir / "gunicorn"), "-c", "inbox/gunicorn_conf.py", "-b", f"127.0.0.1:{self.port}",
             "inbox:create_app()"], env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait()

    def _wait(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                Connection("127.0.0.1", self.port).request("GET", "/healthz")
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("gunicorn did not start")

    def know_customers(self, customers: int) -> None:
        """Identities for the customers, as a shop that has talked to them before has them.

        Without them every message would (rightly) queue a profile fetch that no worker
        here runs, so each delivery would pay for an enqueue a real one pays only once.
        """
        engine = self.sa.create_engine(self.admin_url.set(database=self.name))
        with engine.begin() as conn:
            conn.execute(self.sa.text(
                "INSERT INTO identities (account_id, igsid, username, source, last_fetched_at, created_at, updated_at) "
                "SELECT a.id, (9300000000000000 + k)::text, 'customer' || k, 'profile', now(), now(), now() "
                "FROM accounts a, generate_series(0, :n - 1) AS k WHERE a.ig_user_id = :account"),
                {"n": customers, "account": ACCOUNT})
        engine.dispose()

    def count(self, sql: str) -> int:
        engine = self.sa.create_engine(self.admin_url.set(database=self.name))
        with engine.connect() as conn:
            value = conn.execute(self.sa.text(sql)).scalar()
        engine.dispose()
        return value

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        engine = self.sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(self.sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        engine.dispose()


# --- Main ------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", action="store_true", help="start gunicorn on a throwaway PostgreSQL database")
    parser.add_argument("--url", help="a running server (with --secret)")
    parser.add_argument("--secret", help="its META_APP_SECRET")
    parser.add_argument("--account", default=ACCOUNT)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers with --start")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads per worker with --start")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--customers", type=int, default=500, help="distinct customers the messages come from")
    parser.add_argument("--new-customers", action="store_true",
                        help="customers without identities: every message queues a profile fetch (no worker runs)")
    parser.add_argument("--phases", default="healthz,single,batch,paced")
    args = parser.parse_args()

    server = None
    if args.start:
        base = os.environ.get("DATABASE_URL", "")
        if not base.startswith(("postgres://", "postgresql")):
            raise SystemExit("--start needs DATABASE_URL pointing at a PostgreSQL server")
        server = BenchServer(base, os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/2"), args.workers, args.threads)
        if not args.new_customers:
            server.know_customers(args.customers)
        url, secret, account = server.url, server.secret, ACCOUNT
        print(f"gunicorn: {args.workers} workers x {args.threads} threads (gthread) on {url}, PostgreSQL {server.name}")
    else:
        if not args.url or not args.secret:
            raise SystemExit("give --start, or --url and --secret")
        url, secret, account = args.url.rstrip("/"), args.secret, args.account
    run = uuid.uuid4().hex[:8]
    phases = args.phases.split(",")
    print(f"{os.cpu_count()} cores; {args.concurrency} clients; {args.seconds:.0f} s per phase\n")
    meter = CpuMeter(server.process.pid if server else None, server.name if server else None)
    print(f"load average before: {os.getloadavg()[0]:.1f} (other work on the machine slows every figure)")
    print(f"{'phase':<34}{'requests/s':>11}{'events/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'server CPU ms/req':>19}{'client':>8}  statuses")

    def report(label, latencies, statuses, elapsed, events_per_request, cpu):
        rate = len(latencies) / elapsed
        server_cpu, client_cpu = cpu
        n = max(1, len(latencies))
        print(f"{label:<34}{rate:>11.0f}{rate * events_per_request:>9.0f}{pct(latencies, .5):>8.1f}"
              f"{pct(latencies, .99):>8.1f}{server_cpu / n * 1000:>19.2f}{client_cpu / n * 1000:>8.2f}"
              f"  {dict(sorted(statuses.items()))}")

    try:
        if "healthz" in phases:
            start = meter.sample()
            lat, st = closed_loop(url, lambda w, n: ("GET", "/healthz", None, {}), args.concurrency, args.seconds)
            report("GET /healthz (bare)", lat, st, args.seconds, 0, meter.since(start))
        if "single" in phases:
            def single(w, n, tag=f"{run}s"):
                body = delivery(f"{tag}{w}", n, 1, args.customers, account)
                return "POST", "/webhooks/instagram", body, signed(body, secret)
            start = meter.sample()
            lat, st = closed_loop(url, single, args.concurrency, args.seconds)
            report("POST 1 event per delivery", lat, st, args.seconds, 1, meter.since(start))
        if "batch" in phases:
            def batch(w, n, tag=f"{run}b"):
                body = delivery(f"{tag}{w}", n, args.batch, args.customers, account)
                return "POST", "/webhooks/instagram", body, signed(body, secret)
            start = meter.sample()
            lat, st = closed_loop(url, batch, max(2, args.concurrency // 2), args.seconds)
            report(f"POST {args.batch} events per delivery", lat, st, args.seconds, args.batch, meter.since(start))
        if "paced" in phases:
            bodies = [delivery(f"{run}p", n, 1, args.customers, account) for n in range(int(args.rate * args.seconds))]
            start = meter.sample()
            lat, st, elapsed = paced(url, bodies, secret, args.rate, args.seconds)
            report(f"POST 1 event at {args.rate:.0f}/s (paced)", lat, st, elapsed, 1, meter.since(start))
        if server is not None:
            messages = server.count("SELECT count(*) FROM messages")
            comments = server.count("SELECT count(*) FROM comments")
            failed = server.count("SELECT count(*) FROM webhook_deliveries WHERE status <> 'processed'")
            print(f"\nstored: {messages} messages, {comments} comments; deliveries not processed: {failed}; "
                  f"load average after: {os.getloadavg()[0]:.1f}")
            print("server CPU ms/req: gunicorn workers + this database's PostgreSQL backends, per request;"
                  " 2 idle cores serve about 2000 / that many requests per second")
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
