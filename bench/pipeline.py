"""The acknowledgement path and the applier, against the floor, on PostgreSQL, with wrk.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/2 \\
        .venv/bin/python bench/pipeline.py [--workers 2 --threads 16 --appliers 1] [--phases ...]

It creates a throwaway PostgreSQL database, migrates it, adds the account (and identities
for the customers, as a shop that has talked to them before has them), then starts:
  - the floor (bench/_floor_app.py: HMAC + one autocommit INSERT, nothing else) under
    gunicorn with the same worker class, workers and threads as ours;
  - the inbox under gunicorn (inbox/gunicorn_conf.py) and --appliers `inbox worker`
    processes (each runs one applier).
Phases (each prints its figures and the command-line client's share):
  floor    wrk against the floor: single-event deliveries, --seconds
  single   wrk against our webhook: single-event deliveries, --seconds; then how long the
           appliers took to apply them all, and the apply lag (received -> applied) p50/p99
  batch    wrk with --batch events per delivery; events applied per second (first received
           to last applied)
  sustain  --rate single-event deliveries per second for --sustain-seconds (a paced client,
           its CPU reported): every one applied? apply lag p50/p99
wrk is the client for the closed-loop phases (C: it costs little CPU); `apt install wrk`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webhook_ingest import (  # noqa: E402  (the bench scripts share their helpers)
    ACCOUNT, ROOT, BenchServer, CpuMeter, delivery, free_port, paced, pct, signed,
)

WRK_SCRIPT = r"""
local items = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  local nthreads = tonumber(args[2])
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == (tid - 1) then
      local tab = line:find("\t", 1, true)
      items[#items + 1] = {line:sub(1, tab - 1), line:sub(tab + 1)}
    end
    i = i + 1
  end
  n = 0
end
function request()
  n = n + 1
  local item = items[((n - 1) % #items) + 1]
  return wrk.format("POST", "/webhooks/instagram",
    {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = item[1]}, item[2])
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def wrk(url: str, lines_file: str, *, threads: int, connections: int, seconds: float) -> dict:
    """Run wrk with the signed bodies in lines_file; requests/s, p50/p99 ms, non-2xx, client CPU s."""
    script = Path(tempfile.mkdtemp(prefix="wrk-")) / "bodies.lua"
    script.write_text(WRK_SCRIPT)
    start = os.times()
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
                          "-s", str(script), url, "--", lines_file, str(threads)],
                         capture_output=True, text=True, check=True).stdout
    end = os.times()
    client_cpu = (end.children_user - start.children_user) + (end.children_system - start.children_system)
    figures = {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
               "requests": int(re.search(r"(\d+) requests in", out).group(1)),
               "non2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0,
               "client_cpu": client_cpu}
    for q in ("50", "99"):
        m = re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s|m)\b", out)
        figures[f"p{q}"] = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    return figures


def write_bodies(path: Path, secret: str, count: int, events: int, customers: int, tag: str) -> None:
    with path.open("w") as f:
        for n in range(count):
            body = delivery(tag, n, events, customers, ACCOUNT)
            f.write(signed(body, secret)["X-Hub-Signature-256"] + "\t" + body.decode() + "\n")


class Floor:
    """The floor app under gunicorn, same worker class, workers and threads, same database server."""

    def __init__(self, server: BenchServer, workers: int, threads: int):
        self.server = server
        engine = server.sa.create_engine(server.admin_url.set(database=server.name))
        with engine.begin() as conn:
            conn.execute(server.sa.text("CREATE TABLE floor_deliveries (id bigserial PRIMARY KEY, body bytea NOT NULL,"
                                        " received_at timestamptz NOT NULL)"))
        engine.dispose()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        url = server.admin_url.set(database=server.name, drivername="postgresql")
        env = {**os.environ, "FLOOR_DATABASE_URL": url.render_as_string(hide_password=False),
               "FLOOR_SECRET": server.secret}
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-k", "gthread", "-w", str(workers), "--threads",
             str(threads), "--keep-alive", "5", "-b", f"127.0.0.1:{self.port}", "--chdir", str(ROOT / "bench"),
             "_floor_app:app"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=20)


def start_appliers(server: BenchServer, count: int) -> list[subprocess.Popen]:
    inbox = str(Path(sys.executable).parent / "inbox")
    return [subprocess.Popen([inbox, "worker"], env=server.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for _ in range(count)]


def lag_since(server: BenchServer, first_id: int) -> dict:
    """Deliveries after first_id: how many, applied, lag p50/p99 (ms), first received -> last applied (s)."""
    row_sql = ("SELECT count(*), count(processed_at), "
               "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)), "
               "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)), "
               "extract(epoch FROM max(processed_at) - min(received_at)), "
               "coalesce(sum(event_count), 0) FROM webhook_deliveries WHERE id > %d" % first_id)
    engine = server.sa.create_engine(server.admin_url.set(database=server.name))
    with engine.connect() as conn:
        total, applied, p50, p99, span, events = conn.execute(server.sa.text(row_sql)).one()
    engine.dispose()
    return {"total": total, "applied": applied, "p50": (p50 or 0) * 1000, "p99": (p99 or 0) * 1000,
            "span": float(span or 0), "events": int(events)}


def wait_applied(server: BenchServer, first_id: int, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while True:
        figures = lag_since(server, first_id)
        if figures["applied"] >= figures["total"] or time.time() > deadline:
            return figures
        time.sleep(0.5)


def last_id(server: BenchServer) -> int:
    return server.count("SELECT coalesce(max(id), 0) FROM webhook_deliveries")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (ours and the floor's)")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads per worker")
    parser.add_argument("--appliers", type=int, default=1, help="`inbox worker` processes (one applier each)")
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk phase")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batch-seconds", type=float, default=2.0, help="wrk time for the batch phase")
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--sustain-seconds", type=float, default=60.0)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--phases", default="floor,single,batch,sustain")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt install wrk")
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql")):
        raise SystemExit("DATABASE_URL must point at a PostgreSQL server")
    phases = args.phases.split(",")
    server = BenchServer(base, os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/2"), args.workers, args.threads)
    server.know_customers(args.customers)
    floor = Floor(server, args.workers, args.threads) if "floor" in phases else None
    appliers = start_appliers(server, args.appliers)
    tmp = Path(tempfile.mkdtemp(prefix="inbox-pipeline-bench-"))
    run = uuid.uuid4().hex[:6]
    meter = CpuMeter(server.process.pid, server.name)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before (other work slows every figure)")
    print(f"gunicorn {args.workers} workers x {args.threads} threads (gthread), {args.appliers} applier(s), "
          f"PostgreSQL {server.name}; wrk -t{args.wrk_threads} -c{args.connections} -d{args.seconds:.0f}s")
    try:
        expected = int(args.seconds * 6000)
        singles = tmp / "single.txt"
        write_bodies(singles, server.secret, expected, 1, args.customers, f"{run}s")
        floor_rate = None
        if floor is not None:
            f = wrk(floor.url + "/webhooks/instagram", str(singles), threads=args.wrk_threads,
                    connections=args.connections, seconds=args.seconds)
            floor_rate = f["rate"]
            print(f"floor   1 event/delivery : {f['rate']:8.0f} req/s  p50 {f['p50']:6.1f} ms  p99 {f['p99']:6.1f} ms"
                  f"  non-2xx {f['non2xx']}  wrk CPU {f['client_cpu']:.1f} s")
            floor.stop()
            floor = None
        if "single" in phases:
            first = last_id(server)
            start = meter.sample()
            f = wrk(server.url + "/webhooks/instagram", str(singles), threads=args.wrk_threads,
                    connections=args.connections, seconds=args.seconds)
            web_cpu, _ = meter.since(start)
            ratio = f" = {f['rate'] / floor_rate:.2f} x floor" if floor_rate else ""
            print(f"ours    1 event/delivery : {f['rate']:8.0f} req/s  p50 {f['p50']:6.1f} ms  p99 {f['p99']:6.1f} ms"
                  f"  non-2xx {f['non2xx']}  wrk CPU {f['client_cpu']:.1f} s{ratio}")
            print(f"        web+PostgreSQL CPU {web_cpu / max(1, f['requests']) * 1000:.2f} ms per delivery")
            done = wait_applied(server, first)
            print(f"        applied {done['applied']}/{done['total']} (duplicates of a repeated body count once); "
                  f"apply lag p50 {done['p50']:.0f} ms p99 {done['p99']:.0f} ms; all applied "
                  f"{done['span']:.1f} s after the first arrived ({done['events'] / max(done['span'], 1e-9):.0f} "
                  f"events/s)")
        if "batch" in phases:
            batches = tmp / "batch.txt"
            write_bodies(batches, server.secret, int(args.batch_seconds * 400), args.batch, args.customers, f"{run}b")
            first = last_id(server)
            f = wrk(server.url + "/webhooks/instagram", str(batches), threads=args.wrk_threads,
                    connections=max(2, args.connections // 4), seconds=args.batch_seconds)
            print(f"ours  {args.batch} events/delivery : {f['rate']:6.0f} req/s = {f['rate'] * args.batch:.0f} events/s "
                  f"acknowledged  p50 {f['p50']:.1f} ms  p99 {f['p99']:.1f} ms  non-2xx {f['non2xx']}")
            done = wait_applied(server, first)
            print(f"        applied {done['applied']}/{done['total']} deliveries, {done['events']} events in "
                  f"{done['span']:.1f} s = {done['events'] / max(done['span'], 1e-9):.0f} events/s applied; "
                  f"apply lag p50 {done['p50']:.0f} ms p99 {done['p99']:.0f} ms")
        if "sustain" in phases:
            total = int(args.rate * args.sustain_seconds)
            bodies = [delivery(f"{run}p", n, 1, args.customers, ACCOUNT) for n in range(total)]
            first = last_id(server)
            start_cpu = time.process_time()
            lat, statuses, elapsed = paced(server.url, bodies, server.secret, args.rate, args.sustain_seconds)
            client_cpu = time.process_time() - start_cpu
            done = wait_applied(server, first)
            print(f"sustain {args.rate:.0f}/s for {args.sustain_seconds:.0f} s: sent {len(lat)} in {elapsed:.1f} s, "
                  f"answers {dict(sorted(statuses.items()))}, ack p50 {pct(lat, .5):.1f} ms p99 {pct(lat, .99):.1f} ms"
                  f" (client CPU {client_cpu:.1f} s)")
            print(f"        applied {done['applied']}/{done['total']}; apply lag p50 {done['p50']:.0f} ms "
                  f"p99 {done['p99']:.0f} ms")
        messages = server.count("SELECT count(*) FROM messages")
        dup = server.count("SELECT count(*) FROM (SELECT mid FROM messages GROUP BY account_id, mid "
                           "HAVING count(*) > 1) d")
        stuck = server.count("SELECT count(*) FROM webhook_deliveries WHERE status NOT IN ('processed')")
        print(f"stored {messages} messages, {dup} mids stored twice, {stuck} deliveries not processed; "
              f"load average after {os.getloadavg()[0]:.1f}")
    finally:
        for process in appliers:
            process.terminate()
        for process in appliers:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if floor is not None:
            floor.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
