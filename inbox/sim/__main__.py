"""Run the simulator as a process: `python -m inbox.sim --port 8765 --callback URL …`.

Prints one JSON line with its URL and the accounts (ids and tokens), then serves until
interrupted. Webhooks are delivered by background threads; with --callback the
handshake is retried until the receiver answers it (the inbox may start later).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from .settings import Settings
from .simulator import Simulator


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _rate(text: str) -> float | None:
    return None if text in ("", "0", "none", "off") else float(text)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m inbox.sim", description="A local stand-in for Meta's Graph API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--callback", help="webhook callback URL (e.g. http://127.0.0.1:5000/webhooks/instagram)")
    p.add_argument("--verify-token", default="sim-verify-token")
    p.add_argument("--app-secret", default="sim-app-secret", help="signs webhooks")
    p.add_argument("--app-id", default="1234567890123456")
    p.add_argument("--account", action="append", default=[], metavar="USERNAME[:TOKEN]",
                   help="create an account (repeatable); default: one account 'shop'")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every Graph answer")
    p.add_argument("--retry-delays", type=_floats, default=(0, 5, 30, 120, 600, 3600),
                   help="seconds between webhook attempts after a non-200, comma-separated")
    p.add_argument("--duplicate-rate", type=float, default=0.0)
    p.add_argument("--batch-window", type=float, default=0.0)
    p.add_argument("--out-of-order", action="store_true")
    p.add_argument("--conversations-rate", type=_rate, default=2.0)
    p.add_argument("--send-rate", type=_rate, default=100.0)
    p.add_argument("--profile-rate", type=_rate, default=None)
    p.add_argument("--workers", type=int, default=1, help="webhook delivery threads")
    p.add_argument("--seed", type=int, default=None)
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> Simulator:
    settings = Settings(app_id=args.app_id, app_secret=args.app_secret, verify_token=args.verify_token,
                        callback_url=args.callback, sync=False, delivery_workers=args.workers, seed=args.seed)
    settings.limits.conversations = args.conversations_rate
    settings.limits.send = args.send_rate
    settings.limits.profile = args.profile_rate
    settings.faults.latency = args.latency
    settings.faults.retry_delays = tuple(args.retry_delays)
    settings.faults.duplicate_rate = args.duplicate_rate
    settings.faults.batch_window = args.batch_window
    settings.faults.out_of_order = args.out_of_order
    sim = Simulator(settings)
    for spec in args.account or ["shop"]:
        username, _, token = spec.partition(":")
        sim.add_account(username, **({"token": token} if token else {}))
    return sim


def _verify_until_ok(sim: Simulator, deadline: float) -> None:
    while time.monotonic() < deadline:
        result = sim.webhooks.verify()
        if result.ok:
            print(json.dumps({"handshake": "ok"}), flush=True)
            return
        time.sleep(1.0)
    print(json.dumps({"handshake": "failed", "status": result.status, "error": result.error}), flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    sim = build(args).serve(args.host, args.port)
    accounts = [{"ig_user_id": a.ig_user_id, "username": a.username, "page_id": a.page_id, "token": a.token}
                for a in sim.world.accounts.values()]
    print(json.dumps({"url": sim.url, "accounts": accounts}), flush=True)
    if args.callback:
        threading.Thread(target=_verify_until_ok, args=(sim, time.monotonic() + 120), daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    sim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
