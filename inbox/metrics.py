"""Prometheus metrics: every definition, the multiprocess files, and what /metrics serves.

Other modules call the small functions below (`graph_request`, `reply_finished`, …) and
never touch a metric object. Counters and histograms live in prometheus-client's
multiprocess files (`PROMETHEUS_MULTIPROC_DIR`), so every gunicorn process, every RQ worker
and its job processes add to the same figures, which any web process serves. What reads
state (deliveries by status, media files by state, queue depth, overdue work) is queried
at scrape time by `StateCollector`, never counted along the way.

Labels stay low-cardinality: endpoints, statuses, kinds, Meta error codes; never a user
id, an IGSID, a message id or an account id.

The process identifier names each process's files `<host>-<pid>`; a job process forked by
an RQ worker writes `<host>-<worker pid>j` (one job at a time per worker), so the files do
not grow with every job. `prepare_directory()` (called when gunicorn, `inbox run` or
`inbox worker` starts) removes the files of this host's processes that are gone.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import socket
import time
from collections.abc import Iterable
from pathlib import Path

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.multiprocess import mark_process_dead as _mark_dead
from rq.job import Job
from sqlalchemy import func, select

from . import queue
from .extensions import db, get_redis, rkey
from .models import Account, Attachment, WebhookDelivery, utcnow

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


# --- The multiprocess files ------------------------------------------------------------------

def default_directory() -> str:
    """PROMETHEUS_MULTIPROC_DIR, else `prometheus/` in the instance folder."""
    instance = os.environ.get("INBOX_INSTANCE_PATH") or str(Path(__file__).resolve().parent.parent / "instance")
    return os.environ.get(DIR_VARIABLE) or os.path.join(instance, "prometheus")


_HOST = re.sub(r"[^A-Za-z0-9.]", "-", socket.gethostname()) or "host"
_job_of_worker: int | None = None  # set in a job process: the pid of the worker that forked it


def process_identifier(pid: int | None = None) -> str:
    """The name this process's files carry: `<host>-<pid>`, or `<host>-<worker pid>j` in a job."""
    if pid is None and _job_of_worker is not None and os.getpid() != _job_of_worker:
        return f"{_HOST}-{_job_of_worker}j"
    return f"{_HOST}-{pid or os.getpid()}"


def mark_job_process(worker_pid: int) -> None:
    """In an RQ job process: write to the worker's job files (its jobs run one at a time)."""
    global _job_of_worker
    _job_of_worker = worker_pid


def prepare_directory(path: str | None = None) -> str:
    """Create the directory, export it to child processes, and drop this host's dead processes' files.

    Called before a process group starts its children (gunicorn's master, `inbox worker`,
    `inbox run`), so a container restarted under the same host name finds its
    predecessor's processes dead, and their files go.
    """
    path = path or default_directory()
    os.makedirs(path, exist_ok=True)
    os.environ[DIR_VARIABLE] = path
    pattern = re.compile(rf"_{re.escape(_HOST)}-(\d+)j?\.db$")
    for name in glob.glob(os.path.join(path, "*.db")):
        match = pattern.search(name)
        if match and not queue.pid_alive(int(match.group(1))):
            try:
                os.remove(name)
            except FileNotFoundError:
                pass
    return path


def mark_process_dead(pid: int) -> None:
    """A gunicorn worker ended: its live gauges (open websockets) stop counting."""
    _mark_dead(process_identifier(pid), default_directory())


# Every value goes to the multiprocess files, whatever the environment said when
# prometheus_client was imported; the directory is read when a value is first written.
OPERATOR_DIRECTORY = os.environ.get(DIR_VARIABLE)  # the operator's choice, before ours
os.environ.setdefault(DIR_VARIABLE, default_directory())
os.makedirs(os.environ[DIR_VARIABLE], exist_ok=True)
values.ValueClass = values.MultiProcessValue(process_identifier=process_identifier)


# --- Definitions -----------------------------------------------------------------------------

_HTTP_REQUESTS = Counter("inbox_http_requests_total", "HTTP requests answered, by endpoint and status.",
                         ["endpoint", "method", "status"])
_HTTP_SECONDS = Histogram("inbox_http_request_duration_seconds", "Time to answer an HTTP request.", ["endpoint"])
_DELIVERIES = Counter("inbox_webhook_deliveries_total",
                      "Webhook deliveries applied (or not), by the status they ended with.", ["status"])
_EVENTS = Counter("inbox_webhook_events_total", "Webhook events applied, by event type and outcome.",
                  ["type", "outcome"])
_APPLY_LAG = Histogram("inbox_webhook_apply_lag_seconds", "From a delivery's arrival to its events applied.",
                       buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))
_REPLIES = Counter("inbox_replies_total",
                   "Replies to customers, by outcome (sent, retry, failed, unconfirmed) and Meta error code.",
                   ["outcome", "error_code"])
_GRAPH_REQUESTS = Counter("inbox_graph_requests_total", "Graph API calls, by endpoint and HTTP status.",
                          ["endpoint", "method", "status"])
_GRAPH_SECONDS = Histogram("inbox_graph_request_duration_seconds", "Time a Graph API call took.", ["endpoint"])
_RATELIMIT_WAIT = Histogram("inbox_graph_ratelimit_wait_seconds",
                            "Time a Graph API call waited for its rate-limit slot.", ["bucket"],
                            buckets=(0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
_SOCKETS = Gauge("inbox_websockets_open", "Live-update websockets open now.", multiprocess_mode="livesum")
_LOGINS = Counter("inbox_login_attempts_total", "Staff logins, by outcome (success, failure, throttled).",
                  ["outcome"])
_JOBS = Counter("inbox_jobs_total", "Background jobs run, by task and outcome.", ["task", "outcome"])
_JOB_SECONDS = Histogram("inbox_job_duration_seconds", "Time a background job ran.", ["task"],
                         buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800))
_ERASURES = Counter("inbox_erasures_total", "Data erased: customers by staff, accounts at Meta's request, "
                    "and retention runs.", ["kind"])


# --- What other modules call -----------------------------------------------------------------

def delivery_finished(status: str) -> None:
    _DELIVERIES.labels(status).inc()


def events_applied(outcomes: Iterable, received_at_seconds: float) -> None:
    """A delivery's events were applied: count each by type and outcome, and the lag since arrival."""
    for outcome in outcomes:
        _EVENTS.labels(outcome.type, "failed" if outcome.error else outcome.action).inc()
    _APPLY_LAG.observe(max(0.0, time.time() - received_at_seconds))


def reply_finished(outcome: str, error_code: int | str | None = None) -> None:
    _REPLIES.labels(outcome, "" if error_code is None else str(error_code)).inc()


def graph_request(path: str, method: str, status: int | str, seconds: float) -> None:
    endpoint = graph_endpoint(path)
    _GRAPH_REQUESTS.labels(endpoint, method, str(status)).inc()
    _GRAPH_SECONDS.labels(endpoint).observe(seconds)


def ratelimit_wait(bucket: str, seconds: float) -> None:
    _RATELIMIT_WAIT.labels(bucket).observe(seconds)


def socket_opened() -> None:
    _SOCKETS.inc()


def socket_closed() -> None:
    _SOCKETS.dec()


def login_attempt(outcome: str) -> None:
    _LOGINS.labels(outcome).inc()


def job_finished(task: str, outcome: str, seconds: float) -> None:
    _JOBS.labels(task, outcome).inc()
    _JOB_SECONDS.labels(task).observe(seconds)


def erased(kind: str) -> None:
    _ERASURES.labels(kind).inc()


# Path segments that are names, not ids: everything else becomes "{id}".
_GRAPH_WORDS = {"me", "messages", "conversations", "subscribed_apps", "media", "refresh_access_token",
                "access_token", "oauth", "comments", "replies", "private_replies", "message_attachments"}


def graph_endpoint(path: str) -> str:
    """A Graph API path as a low-cardinality label: "/v24.0/17841/messages" -> "{id}/messages"."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts and re.fullmatch(r"v\d+(\.\d+)?", parts[0]):
        parts = parts[1:]
    return "/".join(p if p in _GRAPH_WORDS else "{id}" for p in parts) or "/"


# --- HTTP requests -----------------------------------------------------------------------------

def init_app(app: Flask) -> None:
    """Time every request and count it by endpoint and status."""
    app.before_request(_start_timer)
    app.after_request(_count_request)


def http_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    """A request answered outside Flask's hooks (the webhook acknowledgement, routes/webhooks.py)."""
    _HTTP_REQUESTS.labels(endpoint, method, str(status)).inc()
    _HTTP_SECONDS.labels(endpoint).observe(seconds)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _count_request(response):
    started = g.pop("metrics_started", None)
    endpoint = request.endpoint or "unknown"
    if endpoint == "live.socket":
        return response  # a websocket's "request" lasts as long as the socket: counted as open sockets
    _HTTP_REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    if started is not None:
        _HTTP_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
    return response


# --- Scrape time ---------------------------------------------------------------------------------

class StateCollector:
    """What the database and Redis hold now, read at each scrape (in the app context)."""

    def __init__(self, app: Flask, obligations: dict | None = None) -> None:
        self.app = app
        self.obligations = obligations  # services.obligations.oldest(), read by the caller

    def collect(self):
        yield from self._database()
        yield from self._queues()

    def _database(self):
        deliveries = GaugeMetricFamily("inbox_webhook_deliveries", "Stored webhook deliveries, by status.",
                                       labels=["status"])
        media = GaugeMetricFamily("inbox_media_files", "Attachments, by the state of their stored file.",
                                  labels=["state"])
        accounts = GaugeMetricFamily("inbox_accounts", "Connected Instagram accounts, by status.", labels=["status"])
        overdue = GaugeMetricFamily("inbox_obligations_overdue",
                                    "Work owed (reply, media, profile, delivery) not done in time, by kind.",
                                    labels=["kind"])
        oldest_owed = GaugeMetricFamily("inbox_obligation_oldest_due_seconds",
                                        "How long ago the oldest obligation not done yet was due, by kind (0: none).",
                                        labels=["kind"])
        oldest = GaugeMetricFamily("inbox_webhook_oldest_unapplied_age_seconds",
                                   "Age of the oldest delivery not applied yet (0: none).")
        try:
            now = utcnow()
            for status, count in db.session.execute(
                    select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)):
                deliveries.add_metric([status], count)
            for state, count in db.session.execute(
                    select(Attachment.media_state, func.count()).group_by(Attachment.media_state)):
                media.add_metric([state or "none"], count)
            for status, count in db.session.execute(select(Account.status, func.count()).group_by(Account.status)):
                accounts.add_metric([status], count)
            first = db.session.scalar(select(func.min(WebhookDelivery.received_at))
                                      .where(WebhookDelivery.status == "received"))
            oldest.add_metric([], max(0.0, (now - first).total_seconds()) if first else 0.0)
            for kind, item in (self.obligations or {}).items():
                overdue.add_metric([kind], item.overdue_count)
                oldest_owed.add_metric([kind], max(0.0, (now - item.due_at).total_seconds()) if item.due_at else 0.0)
        finally:
            db.session.rollback()
        yield from (deliveries, media, accounts, oldest, overdue, oldest_owed)

    def _queues(self):
        depth = GaugeMetricFamily("inbox_queue_jobs", "Jobs waiting in each RQ queue.", labels=["queue"])
        age = GaugeMetricFamily("inbox_queue_oldest_job_age_seconds",
                                "Age of the oldest job waiting in each RQ queue (0: empty).", labels=["queue"])
        workers = GaugeMetricFamily("inbox_workers_alive", "Workers whose heartbeat is fresh.")
        redis = get_redis(self.app)
        now = time.time()
        for q in queue.all_queues(self.app):
            name = q.name.removeprefix(self.app.config["REDIS_NAMESPACE"] + "-")
            depth.add_metric([name], q.count)
            first = q.get_job_ids(0, 1)
            job = Job.fetch(first[0], connection=redis) if first else None
            enqueued = job.enqueued_at.timestamp() if job is not None and job.enqueued_at else now
            age.add_metric([name], max(0.0, now - enqueued))
        workers.add_metric([], sum(1 for _ in redis.scan_iter(match=rkey("worker", "heartbeat", "*", app=self.app),
                                                              count=100)))
        yield from (depth, age, workers)


def exposition(app: Flask, obligations: dict | None = None) -> bytes:
    """Every process's counters and histograms, and the state read now, in the text format.

    `obligations` is `services.obligations.oldest()` (this module is below the services)."""
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=os.environ[DIR_VARIABLE])
    registry.register(StateCollector(app, obligations))
    return generate_latest(registry)
