"""Run an RQ worker (with the scheduler) inside the app context, on the app's queues.

    python worker.py           work until stopped
    python worker.py --burst   run what is queued, then exit
"""

from __future__ import annotations

import argparse
import os
import socket
import threading

from inbox.worker import run_worker

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="run what is queued, then exit")
    parser.add_argument("--name", default=f"{socket.gethostname()}.{os.getpid()}.{threading.get_ident() % 10000}")
    args = parser.parse_args()
    raise SystemExit(run_worker(burst=args.burst, name=args.name))
