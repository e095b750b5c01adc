"""The chaos suite: a real stack whose parts the tests kill (`pytest -m chaos` runs it alone).

Each test gets a private redis-server (never the machine's shared one) that it may kill or
flush, `inbox worker` processes it may SIGKILL, the Meta simulator, and the app's database.
Every case prints its counts. Timeouts are short and outages brief, so the suite takes a few
minutes; the limits asked of the app ("within 2 minutes, nobody running a command") are the
assertions' timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.support.databases import is_postgres
from tests.support.servers import GunicornServer
from tests.support.sim import wire_webhooks
from tests.support.stack import PrivateRedis, WorkerProcess


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/chaos/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.chaos)


def pytest_runtest_setup(item):
    # CI runs the suite twice; the chaos cases run in the PostgreSQL pass (as production), or when asked for.
    if not is_postgres() and "chaos" not in (item.config.getoption("-m") or ""):
        pytest.skip("the chaos suite runs with DATABASE_URL on PostgreSQL, or alone with `pytest -m chaos`")


@pytest.fixture
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.stop()


@pytest.fixture
def app_config(app_config, private_redis):
    app_config["REDIS_URL"] = private_redis.url
    app_config["RECONCILE_INTERVAL_SECONDS"] = 1.0
    app_config["RECONCILE_GRACE_SECONDS"] = 2.0
    app_config["WORKER_HEARTBEAT_SECONDS"] = 2
    app_config["JOB_HEARTBEAT_SECONDS"] = 1.0
    app_config["SEND_RETRY_INTERVALS"] = [1, 2, 5]
    app_config["SEND_ECHO_WAIT_SECONDS"] = 20
    app_config["WEBHOOK_RECOVER_INTERVAL_SECONDS"] = 5
    return app_config


# The same short timings for the worker processes, through their instance/config.py.
WORKER_SETTINGS = {"RECONCILE_INTERVAL_SECONDS": 1.0, "RECONCILE_GRACE_SECONDS": 2.0, "WORKER_HEARTBEAT_SECONDS": 2,
                   "JOB_HEARTBEAT_SECONDS": 1.0, "SEND_RETRY_INTERVALS": [1, 2, 5], "SEND_ECHO_WAIT_SECONDS": 20,
                   "WORKER_MAINTENANCE_SECONDS": 5, "WEBHOOK_RECOVER_INTERVAL_SECONDS": 5}


@pytest.fixture
def start_worker(app_config, tmp_path):
    """start_worker(name=...) → a running `inbox worker` (stopped after the test)."""
    started: list[WorkerProcess] = []
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    # Every plain setting of the test's app (media hosts, limits…), then the short timings.
    plain = {k: v for k, v in app_config.items() if k.isupper() and isinstance(v, (str, int, float, bool, list, tuple))}
    (instance / "config.py").write_text("".join(f"{k} = {v!r}\n" for k, v in {**plain, **WORKER_SETTINGS}.items()))

    def start(name: str = "chaos", *, ready: bool = True, settings: dict | None = None) -> WorkerProcess:
        """`settings` (production values, say) go to this worker only, through its own instance folder."""
        folder = instance
        if settings:
            folder = tmp_path / f"instance-{name}"
            folder.mkdir(exist_ok=True)
            folder.joinpath("config.py").write_text("".join(
                f"{k} = {v!r}\n" for k, v in {**plain, **WORKER_SETTINGS, **settings}.items()))
        worker = WorkerProcess(app_config, folder, name=name).start()
        started.append(worker)
        return worker.wait_ready() if ready else worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def web(app_config, tmp_path, start_worker):
    """The inbox in gunicorn, as production runs it (same instance settings as the workers)."""
    server = GunicornServer(app_config, tmp_path / "instance", threads=8).start()
    yield server
    server.stop(timeout=5)


@pytest.fixture
def stack(app, sim, connected, web, start_worker):
    """gunicorn + one worker + the simulator (retrying refused deliveries, as Meta does) + private Redis."""
    sim.faults.retry_delays = (0.5, 1, 1, 2, 2, 4, 4, 8, 8)
    wire_webhooks(sim, web.url)
    worker = start_worker("w1")
    return Stack(app=app, sim=sim, connected=connected, web=web, worker=worker, start_worker=start_worker)


@dataclass
class Stack:
    app: object
    sim: object
    connected: object
    web: GunicornServer
    worker: WorkerProcess
    start_worker: object
