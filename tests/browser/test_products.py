"""In a real Chromium: the thread's product dropdown, "why this product", and the products pages."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Conversation
from tests.support.browser import login, screenshot

pytestmark = pytest.mark.browser



def _conversation_id(app, account_id, igsid) -> int:
    with app.app_context():
        return db.session.scalar(select(Conversation.id).where(Conversation.account_id == account_id,
                                                               Conversation.customer_igsid == igsid))


def test_a_dropdown_choice_shows_in_a_second_browser_and_the_why_panel_reads_right(
        browser, page, app, factory, sim_webhooks, connected, run_jobs, live_server):
    account, shop = connected.account, connected.ig
    ana = factory.staff_on(account, "agent", name="Ana")
    ben = factory.staff_on(account, "agent", name="Ben")
    dress = factory.product(account, "Red Dress", "RD-1", keywords="red dress").id
    scarf = factory.product(account, "Blue Scarf", "BS-2", keywords="scarf").id
    post = sim_webhooks.add_foreign_post(caption="The red dress, back in every size")
    alice = shop.add_customer("alice", name="Alice")
    alice.shares_post(post)
    run_jobs()
    conv = _conversation_id(app, account.id, alice.igsid)
    thread_url = f"{live_server.url}/accounts/{account.id}/c/{conv}"

    login(page, live_server.url, ana)
    page.goto(thread_url)
    other = browser.new_context(viewport={"width": 1280, "height": 800})
    other.set_default_timeout(10_000)
    second = other.new_page()
    try:
        login(second, live_server.url, ben)
        second.goto(thread_url)
        select_a = page.locator(f"#product-select-{conv}")
        select_b = second.locator(f"#product-select-{conv}")
        expect(select_a).to_have_value(str(dress))
        expect(select_b).to_have_value(str(dress))
        expect(second.locator("#live[data-state=open], #live.is-open, #live")).to_have_count(1)
        second.wait_for_function("() => document.querySelector('#live') && "
                                 "(document.querySelector('#live').dataset.state || 'open') !== 'connecting'")
        # Ben keeps "why" open while Ana changes the product.
        second.get_by_text("Why this product").click()
        why_b = second.locator(f"#why-product-{conv}")
        expect(why_b).to_contain_text("Assigned to Red Dress (RD-1): the customer shared post")
        expect(why_b).to_contain_text("whose caption matched keyword “red dress”; linked it automatically")

        select_a.select_option(str(scarf))
        expect(page.locator(f"#thread-product-form-{conv} .thread-product-source")).to_have_text(
            "Chosen by hand by Ana")
        expect(select_b).to_have_value(str(scarf))  # pushed over the websocket
        expect(why_b).to_contain_text("Set to Blue Scarf (BS-2) by hand by Ana (was Red Dress (RD-1)).")
        expect(second.locator(f"#thread-product-{conv} details.why-product")).to_have_attribute("open", "")
        expect(second.locator(f"#conversation-{conv} .chip-product")).to_have_text("Blue Scarf")

        # Later automatic evidence is recorded, not applied; both browsers read why.
        alice.shares_post(post)
        run_jobs()
        expect(why_b.locator(".why-event").first).to_contain_text(
            "Kept Blue Scarf (BS-2): chosen by hand by Ana.")
        expect(select_b).to_have_value(str(scarf))
        screenshot(second, "products-thread-why")
    finally:
        other.close()


def test_catalogue_and_posts_pages_look_right(page, app, factory, sim_webhooks, connected, run_jobs,
                                              live_server):
    account, shop = connected.account, connected.ig
    admin = factory.staff_on(account, "admin", name="Ana")
    factory.product(account, "Red Dress", "RD-1", price="49.90", currency="EUR", keywords="red dress, crimson")
    factory.product(account, "Blue Scarf", "BS-2", price="19", currency="EUR", keywords="scarf")
    factory.product(account, "<b>Bold</b> Hat", "HT-3")
    shop.add_post("Our crimson collection is here")
    shop.add_customer("alice").shares_post(caption="Is this scarf wool?")
    shop.add_customer("bob").shares_reel(caption="Love this look")
    shop.add_customer("cara").clicks_ad(title="Summer sale")
    run_jobs()

    login(page, live_server.url, admin)
    page.goto(f"{live_server.url}/accounts/{account.id}/products/")
    expect(page.locator("#products tbody tr")).to_have_count(3)
    expect(page.get_by_text("<b>Bold</b> Hat")).to_be_visible()  # shown as text
    screenshot(page, "products-catalogue")

    page.goto(f"{live_server.url}/accounts/{account.id}/posts/")
    page.get_by_role("button", name="Load our posts from Instagram").click()
    expect(page.locator("#own-media-run .run")).to_be_visible()
    run_jobs()  # the worker
    expect(page.locator(".run-summary")).to_contain_text("Loaded 1 post from Instagram (1 new).")
    expect(page.locator("#posts")).to_contain_text("Our crimson collection is here")  # the list reloaded
    row = page.locator("#posts tr.post-row", has_text="Our crimson collection")
    row.locator("select").select_option(label="Red Dress (RD-1)")
    row.get_by_role("button", name="Link").click()
    expect(page.locator("#posts tr.post-row", has_text="Our crimson collection")).to_contain_text("Linked by hand")
    expect(page.locator("#posts tr.post-row", has_text="Is this scarf wool?")).to_contain_text("Auto-linked")
    screenshot(page, "products-posts")
