"""Fixtures: app, client, runner, auth, and the real services behind them.

The suite runs on SQLite by default and on PostgreSQL when DATABASE_URL points at it;
Redis is real: an embedded one per session, or REDIS_URL. Each test gets empty tables
and its own Redis namespace, so runs can share one Redis.

Fixture vocabulary: one name means one kind of thing everywhere in the suite.

- `account`: an Account row (detached) for the shop the webhook payloads of
  tests/support/webhooks.py are addressed to (ig_user_id `ACCOUNT`, username "shop").
  No simulator behind it: feed it with `post(client, envelope(message(...)))`.
- `second_account`: another Account row (`SECOND_ACCOUNT`, username "second").
- `agent`: a StaffUser with the agent role on the test's shop, logged in on `client`.
  A module whose shop is `connected` defines its own `agent` on `connected.account`.
- `connected`: `Connected(account, ig)` (tests/support/sim.py): the Account row and the
  same account in the Meta simulator (`ig`, an `AccountHandle`), one id and token.
- `sim_shop`: an account in the simulator only (an `AccountHandle`), for tests of the
  simulator itself; no Account row.
- `alice`, `bob`: simulated customers (`CustomerHandle`) who have written to the test's
  shop. A module that uses them defines them, saying how they wrote (a real webhook, or
  history without one) and what.
- `factory`: rows as the app writes them (tests/support/factory.py: users, accounts,
  conversations, messages, identities, products, posts, links); `run_jobs`: run what is
  queued; `sim`, `sim_webhooks`, `live_server`, `browser`, `page`: the real parts.

Marks: `browser` (drives Chromium), `postgres("why")` (skipped, saying why, unless
DATABASE_URL is PostgreSQL).
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest
from flask_migrate import upgrade

from inbox import create_app, embedded_redis
from inbox.extensions import db, get_redis
from inbox.services import applier
from tests.support.browser import launch
from tests.support.clients import InboxClient
from tests.support.databases import SessionDatabase, empty_all_tables, is_postgres
from tests.support.factory import PASSWORD, Factory
from tests.support.jobs import run_queued_jobs
from tests.support.servers import ThreadedServer
from tests.support.settings import APP_SECRET, VERIFY_TOKEN, app_settings
from tests.support.sim import connect_account, point_app_at, start_simulator, wire_webhooks
from tests.support.webhooks import ACCOUNT, SECOND_ACCOUNT


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("postgres")
    if marker is not None and not is_postgres():
        why = f" ({marker.args[0]})" if marker.args else ""
        pytest.skip(f"needs PostgreSQL{why}: set DATABASE_URL to a PostgreSQL server")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """REDIS_URL when given, else an embedded Redis for this session."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    base = Path(f"/tmp/inbox-test-redis-{os.getpid()}")
    url, _ = embedded_redis.ensure_running(base, persist=False)
    yield url
    embedded_redis.stop(base)


@pytest.fixture(scope="session")
def session_db(tmp_path_factory, redis_url):
    """This session's database, migrated once with the real migrations."""
    database = SessionDatabase(tmp_path_factory.mktemp("db"))
    app = create_app(app_settings(database.url, redis_url, "migrate"))
    with app.app_context():
        upgrade()
        for engine in db.engines.values():
            engine.dispose()
    yield database
    database.drop()


@pytest.fixture
def app_config(session_db, redis_url, tmp_path):
    """The test mapping given to create_app; a test may change it before using `app`."""
    return app_settings(session_db.url, redis_url, f"t{uuid.uuid4().hex[:10]}", MEDIA_ROOT=str(tmp_path / "media"))


@pytest.fixture
def app(app_config, request):
    if "sim" in request.fixturenames:  # the simulator must change app_config before the app is built
        request.getfixturevalue("sim")
    app = create_app(app_config)
    with app.app_context():
        empty_all_tables(db)
    yield app
    shutdown = app.extensions.get("inbox_shutdown")
    if shutdown is not None:  # the live listener thread ends with its app
        shutdown()
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
        r = get_redis(app)
        namespace = app_config["REDIS_NAMESPACE"]
        keys = list(r.scan_iter(match=f"*{namespace}*", count=1000))
        if keys:
            r.delete(*keys)
        r.close()


@pytest.fixture
def client(app):
    app.test_client_class = InboxClient
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def factory(app):
    return Factory(app)


class AuthActions:
    def __init__(self, client, factory):
        self._client = client
        self._factory = factory

    def login(self, user=None, password: str = PASSWORD, *, follow_redirects: bool = False):
        """Log in as user (an admin of a fresh account when none is given)."""
        if user is None:
            account = self._factory.account()
            user = self._factory.staff_on(account, "admin")
        response = self._client.post("/login", data={"email": user.email, "password": password},
                                     follow_redirects=follow_redirects)
        return response

    def logout(self):
        return self._client.post("/logout")


@pytest.fixture
def auth(client, factory):
    return AuthActions(client, factory)


# --- The vocabulary (see the module docstring) ----------------------------------------

@pytest.fixture
def account(factory):
    """The shop the webhook payloads are addressed to: an Account row, detached."""
    return factory.account(ACCOUNT, "shop")


@pytest.fixture
def second_account(factory):
    """Another shop (SECOND_ACCOUNT): an Account row, detached."""
    return factory.account(SECOND_ACCOUNT, "second")


@pytest.fixture
def agent(factory, account, auth):
    """An agent of `account`, logged in on `client`."""
    user = factory.staff_on(account, "agent")
    auth.login(user)
    return user


@pytest.fixture
def run_jobs(app):
    """Call to run every queued job for real (RQ, this process); returns the count."""
    return lambda: run_queued_jobs(app)


@pytest.fixture
def running_applier(app):
    """The worker's applier, in this process: applies what a real server (gunicorn) stored."""
    stop = threading.Event()
    thread = applier.start_applier(app, stop)
    yield thread
    stop.set()
    thread.join(timeout=10)


# --- Real servers and a real browser ------------------------------------------------

@pytest.fixture
def live_server(app):
    """The app served over real HTTP (threaded, websockets work) for this test."""
    server = ThreadedServer(app).start()
    yield server
    server.stop()


# --- The Meta simulator (tests/support/sim.py documents these) ----------------------

@pytest.fixture
def sim(app_config):
    """The Meta simulator over real HTTP; the app built in this test talks to it."""
    simulator = start_simulator(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN)
    point_app_at(app_config, simulator)
    yield simulator
    simulator.close()


@pytest.fixture
def connected(sim, factory):
    """Connected(account, ig): the same Instagram account in the inbox and in the simulator."""
    return connect_account(factory, sim)


@pytest.fixture
def sim_shop(sim):
    """An account in the simulator only (no Account row): for tests of the simulator itself."""
    return sim.add_account("shop")


@pytest.fixture
def sim_webhooks(sim, live_server):
    """The simulator delivering webhooks to the app served by live_server (handshake passed)."""
    wire_webhooks(sim, live_server.url)
    return sim


@pytest.fixture(scope="session")
def _playwright():
    from playwright.sync_api import sync_playwright  # loaded by browser tests only (a third of a second)

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(_playwright):
    browser = launch(_playwright)
    yield browser
    browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()
