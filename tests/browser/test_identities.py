"""In a real Chromium: Refresh identities and Resync from the inbox header, live progress, names after."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import login, screenshot
from tests.support.jobs import background_worker

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config(app_config):
    app_config.update(IDENTITY_REFRESH_CONCURRENCY=2, JOB_PROGRESS_INTERVAL_SECONDS=0, SYNC_PAGE_SIZE=3)
    return app_config


def test_refresh_identities_shows_progress_then_names(page, live_server, sim, connected, factory, run_jobs):
    account, shop = connected.account, connected.ig
    names = ["amara.k", "bea_store_fan", "carlos.m", "dev.patel", "elif", "farid", "gwen", "hiro", "ines.r", "jules"]
    for i, name in enumerate(names):
        customer = shop.add_customer(name, name=name.replace(".", " ").replace("_", " ").title())
        customer.sends_text("hello", deliver=False)
        factory.conversation(account, customer.igsid, messages=[
            {"mid": f"m{i}", "text": "hello", "ts": 1_770_000_000_000 + i * 1000}])
    blocked = shop.add_customer("blocked_one")
    blocked.sends_text("hi", deliver=False)
    factory.conversation(account, blocked.igsid)
    blocked.set(available=False)
    admin = factory.staff_on(account, "admin", name="Olga")
    page.clock.install()  # the page's timers run in real time, and can be run ahead at the end
    login(page, live_server.url, admin)

    page.goto(f"{live_server.url}/accounts/{account.id}/people/")
    expect(page.get_by_role("heading", name="People")).to_be_visible()
    expect(page.get_by_text(f"Instagram user ·{blocked.igsid[-4:]}")).to_be_visible()
    screenshot(page, "identities-people-before")

    sim.faults.latency = 1.0  # slow enough to watch the bar move (a poll every 2 s)
    page.goto(f"{live_server.url}/accounts/{account.id}/")
    header = page.locator("#runs-panel")
    expect(header.get_by_role("button", name="Refresh identities")).to_be_visible()
    expect(header.get_by_role("button", name="Resync")).to_be_visible()
    header.get_by_role("button", name="Refresh identities").click()
    run = page.locator(".run")
    expect(run).to_contain_text("Waiting for a worker")
    screenshot(page, "identities-refresh-queued")

    with background_worker(factory.app):
        expect(run.locator("progress[max='11']")).to_be_visible(timeout=15_000)
        # The bar moves while the run works (a poll every 2 s; each call takes 1 s, two at a time).
        expect(run).to_contain_text(re.compile(r"\b([1-9]|10) of 11 people"), timeout=15_000)
        screenshot(page, "identities-refresh-running")
        expect(run).to_contain_text("Refreshed 10 of 11 people · 1 failed.", timeout=30_000)
    screenshot(page, "identities-refresh-done")
    run.get_by_text("1 problem").click()
    expect(run).to_contain_text("isn't available on Instagram")
    screenshot(page, "identities-refresh-problems")
    # Polling stopped with the summary (286): nothing more is asked of the server. The page's
    # clock runs three poll intervals ahead; a request made before the marker is seen first.
    requests = []
    page.on("request", lambda request: requests.append(request.url) if "/runs/" in request.url else None)
    page.clock.run_for(6_000)
    with page.expect_request(lambda request: request.url.endswith("/healthz")):
        page.evaluate("fetch('/healthz')")
    assert requests == []

    page.goto(f"{live_server.url}/accounts/{account.id}/people/")
    for name in names:
        expect(page.get_by_text(f"@{name}", exact=True)).to_be_visible()
    expect(page.get_by_text("Dev Patel")).to_be_visible()
    expect(page.locator("#people img").first).to_be_visible()
    # Every picture loaded from the simulated CDN (none broken).
    broken = page.evaluate("() => [...document.querySelectorAll('#people img')].filter(i => !i.naturalWidth).length")
    assert broken == 0
    screenshot(page, "identities-people-after")


def test_resync_from_the_inbox_header(page, live_server, sim, connected, factory, run_jobs):
    account, shop = connected.account, connected.ig
    for i in range(7):
        customer = shop.add_customer(f"buyer{i}")
        customer.sends_text(f"Is the mug {i} in stock?", deliver=False)
        shop.types_in_app(customer, "Yes!", deliver=False)
    admin = factory.staff_on(account, "admin")
    login(page, live_server.url, admin)
    page.goto(f"{live_server.url}/accounts/{account.id}/")
    page.locator("#runs-panel").get_by_role("button", name="Resync").click()
    run = page.locator(".run")
    expect(run).to_be_visible()
    with background_worker(factory.app):
        expect(run).to_contain_text("7 conversations (7 new) · 14 messages (14 new)", timeout=30_000)
    screenshot(page, "identities-resync-done")
    # A second click starts a new run that finds nothing new.
    page.locator("#runs-panel").get_by_role("button", name="Resync").click()
    with background_worker(factory.app):
        expect(page.locator(".run")).to_contain_text("(0 new) · 14 messages (0 new)", timeout=30_000)
    screenshot(page, "identities-resync-again")


def test_a_picture_instagram_no_longer_serves_shows_the_initial(page, live_server, sim, connected, factory,
                                                                 run_jobs):
    account, shop = connected.account, connected.ig
    kim = shop.add_customer("kim.lee", name="Kim Lee")
    kim.sends_text("hi", deliver=False)
    factory.conversation(account, kim.igsid)
    from inbox.extensions import db
    from inbox.services import identities

    with factory.app.app_context():
        identities.fetch_profile(account.id, kim.igsid)
        # A link whose signature the CDN refuses (403), though its `oe` says it is still valid.
        row = db.session.scalars(db.select(identities.Identity)).one()
        row.profile_pic_url = re.sub(r"oh=00_[0-9a-f]+", "oh=00_0000", row.profile_pic_url)
        db.session.commit()
    login(page, live_server.url, factory.staff_on(account, "agent"))
    page.goto(f"{live_server.url}/accounts/{account.id}/people/")
    avatar = page.locator(".person-avatar").first
    expect(avatar).to_contain_text("K")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("() => document.querySelector('.person-avatar img').naturalWidth") == 0  # really broken
    box = avatar.bounding_box()
    assert box and box["width"] == 36
    screenshot(page, "identities-broken-picture")
