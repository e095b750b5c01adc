"""In a real Chromium: the Insights page's charts at desktop and phone widths, a chart's numbers
behind its toggle, and marking a conversation Sold from the thread."""

from __future__ import annotations

import random
import time

import pytest
from playwright.sync_api import expect

from inbox.services.insights import sales
from tests.support.browser import login, screenshot

pytestmark = pytest.mark.browser

DAY = 86_400_000


def _weeks_of_history(app, factory, account):
    """Three weeks of conversations from every source, answered by two people, some sold."""
    rng = random.Random(5)
    ana = factory.staff_on(account, "admin", name="Ana")
    bo = factory.staff_on(account, "agent", name="Bo")
    products = [factory.product(account, name, sku) for name, sku in
                (("Red Dress", "RD-1"), ("Linen Bag", "LB-2"), ("Straw Hat", "SH-3"))]
    for i, product in enumerate(products):
        factory.link(factory.post(account, f"17955500{i}", caption=f"{product.name}: new in", is_own=True), product)
    now = int(time.time() * 1000)
    first = None
    for n in range(60):
        start = now - rng.randint(1, 20) * DAY - rng.randint(0, 10) * 3_600_000
        kind = rng.choice(("dm", "post", "post", "ad", "story"))
        opening = {"text": "hi, is this available?", "ts": start}
        if kind == "post":
            opening.update(text=None, attachments=[{"type": "share", "media_id": f"17955500{n % 3}"}])
        elif kind == "ad":
            opening["referral"] = {"source": "ADS", "ad_id": f"AD-{n % 2}", "ads_context_data": {
                "ad_title": ("Autumn sale", "New linen")[n % 2]}}
        elif kind == "story":
            opening["reply_to_story_id"] = "st-1"
        c = factory.conversation(account, product_id=products[n % 3].id if kind == "post" else None,
                                 messages=[opening, {"text": "price?", "ts": start + 60_000}])
        if rng.random() < 0.85:
            factory.message(c, "Yes! 49.90", out=True, status="sent", sender_kind="staff",
                            sent_by_user_id=rng.choice((ana, bo)).id, ts=start + rng.randint(2, 180) * 60_000)
        first = first or c
        if kind == "post" and n % 4 == 0:
            with app.app_context():
                sales.mark_sold(account.id, c.id, product_id=products[n % 3].id, quantity="1", amount="49.90",
                                user_id=ana.id)
    return ana, first, products[0]


def test_insights_page_on_desktop_and_phone(page, app, factory, account, live_server):
    ana, _, _ = _weeks_of_history(app, factory, account)
    login(page, live_server.url, ana)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/accounts/{account.id}/insights/?days=30")
    for chart in ("conversations", "first_response", "products", "heatmap"):
        expect(page.locator(f"#chart-{chart} svg.chart")).to_be_visible()
    expect(page.locator(".kpi").first).to_contain_text("60")
    expect(page.locator("#chart-top .rank").first).to_contain_text("new in")
    table = page.locator("#chart-conversations .chart-data table")
    expect(table).to_be_hidden()
    page.locator("#chart-conversations .chart-data summary").click()
    expect(table).to_be_visible()
    expect(table.locator("tbody tr").last).to_contain_text("Total")
    screenshot(page, "insights-desktop")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    box = page.locator("#chart-conversations svg.chart").bounding_box()
    assert box["width"] <= 390 and box["width"] > 300  # fills the phone's width, no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "insights-phone")


def test_marking_sold_from_the_thread(page, app, factory, account, live_server):
    ana, conversation, dress = _weeks_of_history(app, factory, account)
    login(page, live_server.url, ana)
    page.goto(f"{live_server.url}/accounts/{account.id}/c/{conversation.id}")
    box = page.locator(f"#thread-outcome-{conversation.id}")
    box.locator("summary").click()
    box.locator("select[name=product_id]").select_option(str(dress.id))
    box.locator("input[name=quantity]").fill("2")
    box.locator("input[name=amount]").fill("99.80")
    box.get_by_role("button", name="Sold", exact=True).click()
    expect(page.locator(f"#thread-outcome-{conversation.id} .outcome-sold")).to_have_text("Sold")
    expect(page.locator(f"#thread-outcome-{conversation.id}")).to_contain_text("Sold 2 × Red Dress for 99.80 EUR")
    screenshot(page, "insights-thread-sold")
