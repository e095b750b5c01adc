"""In a real Chromium: an admin opens a customer's page from People and erases them."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.browser import login, screenshot

pytestmark = pytest.mark.browser


def test_an_admin_erases_a_customer_from_their_page(page, live_server, factory, account):
    factory.conversation(account, "8800001", messages=["Do you still have the red dress?", "Size M please"])
    factory.identity(account, "8800001", username="maya.styles", name="Maya Lindqvist")
    factory.conversation(account, "8800002", messages=["Hello!"])
    factory.identity(account, "8800002", username="jonas_k", name="Jonas Keller")
    admin = factory.staff_on(account, "admin")
    login(page, live_server.url, admin)

    page.goto(f"{live_server.url}/accounts/{account.id}/people/")
    page.get_by_role("link", name="@maya.styles").click()
    expect(page.get_by_role("heading", name="Erase this customer")).to_be_visible()
    expect(page.get_by_text("2 messages")).to_be_visible()
    screenshot(page, "person-page-erase")

    page.get_by_label("I understand").check()
    page.get_by_role("button", name="Erase customer").click()
    expect(page.get_by_text("The customer was erased: 2 messages")).to_be_visible()
    expect(page.get_by_text("@maya.styles")).to_have_count(0)
    expect(page.get_by_text("@jonas_k")).to_be_visible()
    screenshot(page, "people-after-erase")
