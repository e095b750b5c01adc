"""Gunicorn settings for the inbox: threads, because every open websocket holds one.

Also: the Prometheus multiprocess directory (made, and this host's dead processes' files
removed, when gunicorn starts; a worker that ends stops counting in live gauges), and
JSON logs for gunicorn's own lines when LOG_FORMAT=json.
"""

import os
import signal

from inbox import logs, metrics

os.environ.setdefault(logs.PROCESS_VARIABLE, "web")

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "64"))
bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
# Websockets never finish on their own; the app closes them (1012) on shutdown.
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "10"))
timeout = 60
keepalive = 5
accesslog = os.environ.get("WEB_ACCESS_LOG") or None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
logconfig_dict = logs.gunicorn_logconfig() or {}


def on_starting(server):
    metrics.prepare_directory()


def child_exit(server, worker):
    metrics.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """SIGTERM: close the app's websockets (1012) first, or gunicorn waits for them to end."""
    previous = signal.getsignal(signal.SIGTERM)

    def handle_term(signum, frame):
        _shutdown_app(worker)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, handle_term)


def worker_int(worker):
    """Ctrl-C in the foreground: let the app close its websockets first."""
    _shutdown_app(worker)


def worker_exit(server, worker):
    _shutdown_app(worker)


def _shutdown_app(worker):
    app = getattr(worker, "wsgi", None)
    hook = getattr(app, "extensions", {}).get("inbox_shutdown") if app is not None else None
    if hook:
        hook()
