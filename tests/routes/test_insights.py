"""The Insights page, its CSV downloads, the hours form, the thread's sale outcome, and the filtered inbox."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from inbox.extensions import db
from inbox.models import SaleOutcome


def ms(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


PERIOD = {"from": "2026-11-02", "to": "2026-11-08"}


def _history(factory, account):
    """Monday 2 November (UTC): a shared post answered in 5 minutes, a DM unanswered; Tuesday an ad."""
    admin = factory.staff_on(account, "admin", name="Ana")
    dress = factory.product(account, "Red Dress", "RD-1")
    post = factory.post(account, "1795555", caption="Red dress, new in", is_own=True)
    factory.link(post, dress)
    shared = factory.conversation(account, product_id=dress.id, messages=[
        {"text": None, "ts": ms(2026, 11, 2, 10), "attachments": [{"type": "share", "media_id": "1795555"}]}])
    factory.message(shared, "hi!", out=True, status="sent", sender_kind="staff", sent_by_user_id=admin.id,
                    ts=ms(2026, 11, 2, 10, 5))
    dm = factory.conversation(account, messages=[{"text": "hello", "ts": ms(2026, 11, 2, 12)}])
    ad = factory.conversation(account, messages=[{"text": "price?", "ts": ms(2026, 11, 3, 9), "referral": {
        "source": "ADS", "ad_id": "AD-9", "ads_context_data": {"ad_title": "Winter sale"}}}])
    return {"admin": admin, "dress": dress, "shared": shared, "dm": dm, "ad": ad}


def test_the_page_shows_the_charts_totals_and_tables(client, factory, account, agent):
    h = _history(factory, account)
    r = client.get(f"/accounts/{account.id}/insights/", query_string=PERIOD)
    page = r.get_data(as_text=True)
    assert r.status_code == 200
    assert page.count('<svg class="chart"') == 4
    for title in ("Conversations started", "First response time", "Products", "Top posts and ads",
                  "When customers write", "Per person"):
        assert title in page
    assert page.count("Show the numbers") == 6 and page.count("Download CSV") == 7
    assert '<span class="kpi-value">3</span>' in page  # three conversations started
    assert "Red dress, new in" in page and "Winter sale" in page
    assert f'href="/accounts/{account.id}/?post=1795555"' in page
    assert f'href="/accounts/{account.id}/?ad=AD-9"' in page
    assert f'href="/accounts/{account.id}/?product={h["dress"].id}"' in page
    assert "<th scope=\"row\">Ana</th><td class=\"num\">1</td><td class=\"num\">1</td><td class=\"num\">5 min</td>" in page


def test_presets_and_a_bad_custom_period(client, factory, account, agent):
    r = client.get(f"/accounts/{account.id}/insights/?days=7")
    assert r.status_code == 200 and 'aria-current="true">7 days' in r.get_data(as_text=True)
    r = client.get(f"/accounts/{account.id}/insights/", query_string={"from": "2026-11-08", "to": "2026-11-02"})
    assert r.status_code == 400 and "The period must end on or after its first day." in r.get_data(as_text=True)
    r = client.get(f"/accounts/{account.id}/insights/", query_string={"from": "2024-01-01", "to": "2026-01-01"})
    assert r.status_code == 400 and "at most 366 days" in r.get_data(as_text=True)


def test_csv_per_chart(client, factory, account, agent):
    _history(factory, account)
    r = client.get(f"/accounts/{account.id}/insights/conversations.csv", query_string=PERIOD)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert 'filename="insights-conversations-2026-11-02-2026-11-08.csv"' in r.headers["Content-Disposition"]
    lines = r.get_data(as_text=True).splitlines()
    assert lines[0] == "date,dm,post,ad,story,comment,total"
    assert lines[1:4] == ["2026-11-02,1,1,0,0,0,2", "2026-11-03,0,0,1,0,0,1", "2026-11-04,0,0,0,0,0,0"]
    assert lines[-1] == "Total,1,1,1,0,0,3"
    r = client.get(f"/accounts/{account.id}/insights/first_response.csv", query_string=PERIOD)
    assert r.get_data(as_text=True).splitlines()[1] == "2026-11-02,1,300,300"
    r = client.get(f"/accounts/{account.id}/insights/top_ads.csv", query_string=PERIOD)
    assert r.get_data(as_text=True).splitlines() == ["ad_id,ad,conversations,sales,amount_EUR",
                                                     "AD-9,Winter sale,1,0,0.00"]
    assert client.get(f"/accounts/{account.id}/insights/nothing.csv").status_code == 404


def test_business_hours_are_for_admins_and_change_the_response_times(client, auth, factory, account, agent):
    h = _history(factory, account)
    form = {"timezone": "Europe/Lisbon", "currency": "gbp", "hours": "schedule", "day_0": "1",
            "open_0": "10:03", "close_0": "18:00"}
    assert client.post(f"/accounts/{account.id}/insights/settings", data=form).status_code == 403
    auth.logout()
    auth.login(h["admin"])
    r = client.post(f"/accounts/{account.id}/insights/settings", data=form)
    assert r.status_code == 302
    # Lisbon is UTC+0 in November: the reply at 10:05 is two business minutes after 10:03.
    csv = client.get(f"/accounts/{account.id}/insights/first_response.csv", query_string=PERIOD)
    assert csv.get_data(as_text=True).splitlines()[1] == "2026-11-02,1,120,120"
    assert "amount_GBP" in client.get(f"/accounts/{account.id}/insights/products.csv",
                                      query_string=PERIOD).get_data(as_text=True)
    r = client.post(f"/accounts/{account.id}/insights/settings", data={**form, "close_0": "09:00"},
                    follow_redirects=True)
    assert "Monday: closing time must be after opening time." in r.get_data(as_text=True)
    r = client.post(f"/accounts/{account.id}/insights/settings", data={**form, "timezone": "Mars/Base"},
                    follow_redirects=True)
    assert "Unknown time zone" in r.get_data(as_text=True)


def test_marking_a_conversation_sold_from_the_thread(app, client, factory, account, agent):
    h = _history(factory, account)
    cid = h["shared"].id
    thread = client.get(f"/accounts/{account.id}/c/{cid}").get_data(as_text=True)
    assert f'id="thread-outcome-{cid}"' in thread
    url = f"/accounts/{account.id}/insights/conversations/{cid}/outcome"
    r = client.post(url, data={"action": "sold", "product_id": h["dress"].id, "quantity": "2", "amount": "99,80"},
                    headers={"HX-Request": "true"})
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "Sold 2 × Red Dress for 99.80 EUR" in body
    r = client.post(url, data={"action": "sold", "product_id": h["dress"].id, "quantity": "x", "amount": "1"},
                    headers={"HX-Request": "true"})
    assert r.status_code == 422 and "Quantity must be a whole number." in r.get_data(as_text=True)
    r = client.post(url, data={"action": "not_sold", "reason": "Too expensive"}, headers={"HX-Request": "true"})
    assert "Not sold: Too expensive" in r.get_data(as_text=True)
    with app.app_context():
        rows = db.session.execute(select(SaleOutcome.outcome, SaleOutcome.is_current, SaleOutcome.marked_by_user_id)
                                  .order_by(SaleOutcome.id)).all()
    assert rows == [("sold", False, agent.id), ("not_sold", True, agent.id)]
    r = client.post(url, data={"action": "clear"})
    assert r.status_code == 302
    page = client.get(f"/accounts/{account.id}/insights/", query_string=PERIOD).get_data(as_text=True)
    assert "0 not sold" in page


def test_another_accounts_conversation_is_not_found(client, factory, account, second_account, agent):
    theirs = factory.conversation(second_account, messages=["hi"])
    url = f"/accounts/{account.id}/insights/conversations/{theirs.id}/outcome"
    assert client.get(url).status_code == 404
    assert client.post(url, data={"action": "not_sold", "reason": "x"}).status_code == 404
    assert client.get(f"/accounts/{second_account.id}/insights/").status_code == 404


def test_the_inbox_filters_by_the_post_or_ad_that_started_a_conversation(client, factory, account, agent):
    h = _history(factory, account)
    client.get(f"/accounts/{account.id}/insights/", query_string=PERIOD)  # folds the history into the facts
    page = client.get(f"/accounts/{account.id}/?post=1795555").get_data(as_text=True)
    assert f'id="conversation-{h["shared"].id}"' in page and f'id="conversation-{h["dm"].id}"' not in page
    assert "Started by post 1795555" in page
    page = client.get(f"/accounts/{account.id}/?ad=AD-9").get_data(as_text=True)
    assert f'id="conversation-{h["ad"].id}"' in page and f'id="conversation-{h["shared"].id}"' not in page


def test_a_large_accounts_first_build_runs_in_the_worker(app, app_config, client, factory, account, agent, run_jobs):
    app.config["INSIGHTS_INLINE_FIRST_BUILD"] = 2
    _history(factory, account)
    r = client.get(f"/accounts/{account.id}/insights/", query_string=PERIOD)
    assert r.status_code == 202 and "Preparing the insights" in r.get_data(as_text=True)
    r = client.get(f"/accounts/{account.id}/insights/conversations.csv", query_string=PERIOD)
    assert r.status_code == 503 and r.headers["Retry-After"] == "30"
    assert run_jobs() == 1
    r = client.get(f"/accounts/{account.id}/insights/", query_string=PERIOD)
    assert r.status_code == 200 and '<span class="kpi-value">3</span>' in r.get_data(as_text=True)
