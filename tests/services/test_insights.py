"""Insights figures on a hand-built week in Berlin: business hours across a weekend and the
end of summer time (Sunday 25 October 2026: UTC+2 before, UTC+1 after), exact numbers."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from inbox.extensions import db
from inbox.models import Comment, ConversationEvent
from inbox.services import activity, conversations
from inbox.services.insights import facts, hours, report, sales
from inbox.services.insights.hours import Period


def ms(*args) -> int:
    """Meta's ms for a UTC time."""
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


NOW = datetime(2026, 10, 31, 12, tzinfo=timezone.utc)
WEEK = Period(date(2026, 10, 23), date(2026, 10, 29), "Europe/Berlin")
NINE_TO_FIVE = {d: [(9 * 60, 17 * 60)] for d in range(5)}


@pytest.fixture
def history(app, factory, account, second_account):
    ana = factory.staff_on(account, name="Ana")
    bob = factory.staff_on(account, name="Bob")
    dress = factory.product(account, "Red Dress", "RD-1")
    post = factory.post(account, "1790001", caption="Red dress in autumn", is_own=True)
    factory.link(post, dress)
    out = {"ana": ana, "bob": bob, "dress": dress}

    # A: Friday 16:30 Berlin (UTC+2) → Monday 09:45 (UTC+1): 30 + 45 business minutes.
    a = factory.conversation(account, messages=[{"text": "hi", "ts": ms(2026, 10, 23, 14, 30)}])
    factory.message(a, "hello", out=True, status="sent", sender_kind="staff", sent_by_user_id=ana.id,
                    ts=ms(2026, 10, 26, 8, 45))
    # C: a story reply on Saturday, answered from the owner's app five minutes later: 0 business seconds.
    c = factory.conversation(account, messages=[{"text": "love it", "ts": ms(2026, 10, 24, 9, 0),
                                                 "reply_to_story_id": "st1"}])
    factory.message(c, "thanks", out=True, ts=ms(2026, 10, 24, 9, 5))
    # B: a shared post Monday 10:00, a second message, Ana answers at 10:20.
    b = factory.conversation(account, product_id=dress.id, messages=[
        {"text": None, "ts": ms(2026, 10, 26, 9, 0), "attachments": [{"type": "share", "media_id": "1790001"}]},
        {"text": "price?", "ts": ms(2026, 10, 26, 9, 5)}])
    factory.message(b, "49.90", out=True, status="sent", sender_kind="staff", sent_by_user_id=ana.id,
                    ts=ms(2026, 10, 26, 9, 20))
    # D: an ad at Monday 08:00, before opening; Bob answers at 09:30.
    d = factory.conversation(account, messages=[{"text": "is this available?", "ts": ms(2026, 10, 26, 7, 0),
                                                 "referral": {"source": "ADS", "type": "OPEN_THREAD",
                                                              "ad_id": "AD-1", "ads_context_data": {
                                                                  "ad_title": "Autumn sale", "post_id": "1790001"}}}])
    factory.message(d, "yes", out=True, status="sent", sender_kind="staff", sent_by_user_id=bob.id,
                    ts=ms(2026, 10, 26, 8, 30))
    # E: a private reply to a comment on the post (an automation), the customer answers; nobody yet.
    with app.app_context():
        comment = Comment(account_id=account.id, comment_id="c-1", media_id="1790001", post_id=post.id,
                          author_igsid="555", author_username="eve", text="price", meta_timestamp=ms(2026, 10, 27, 10))
        db.session.add(comment)
        db.session.commit()
        comment_id = comment.id
    e = factory.conversation(account, messages=[
        {"text": "Sent you the price", "out": True, "status": "sent", "sender_kind": "automation",
         "comment_id": comment_id, "ts": ms(2026, 10, 27, 11, 0)},
        {"text": "thanks, and shipping?", "ts": ms(2026, 10, 27, 11, 10)}])
    # F: a DM Tuesday 09:00; Bob's first try failed, the next went at 11:00: two hours.
    f = factory.conversation(account, messages=[{"text": "hello?", "ts": ms(2026, 10, 27, 8, 0)}])
    factory.message(f, "hi", out=True, status="failed", sender_kind="staff", sent_by_user_id=bob.id,
                    ts=ms(2026, 10, 27, 8, 5))
    factory.message(f, "hi!", out=True, status="sent", sender_kind="staff", sent_by_user_id=bob.id,
                    ts=ms(2026, 10, 27, 10, 0))
    # G: the week before, answered in 10 minutes.
    g = factory.conversation(account, messages=[{"text": "open?", "ts": ms(2026, 10, 20, 8, 0)}])
    factory.message(g, "yes", out=True, ts=ms(2026, 10, 20, 8, 10))
    # Another account, same week, same post id: never counted here.
    other = factory.conversation(second_account, messages=[
        {"text": None, "ts": ms(2026, 10, 26, 9, 0), "attachments": [{"type": "share", "media_id": "1790001"}]}])
    factory.message(other, "x", out=True, ts=ms(2026, 10, 26, 9, 1))
    out.update(a=a, b=b, c=c, d=d, e=e, f=f, g=g, other=other)
    with app.app_context():
        facts.update_settings(account.id, timezone="Europe/Berlin", schedule=NINE_TO_FIVE, currency="EUR")
    return out


def build(account, period=WEEK):
    return report.build(account.id, period, now=NOW)


def test_conversations_started_per_day_by_source(app, account, history):
    with app.app_context():
        r = build(account)
    per_day = {day: {s: n for s, n in counts.items() if n} for day, counts in r.started.items()}
    assert per_day == {
        date(2026, 10, 23): {"dm": 1}, date(2026, 10, 24): {"story": 1}, date(2026, 10, 25): {},
        date(2026, 10, 26): {"post": 1, "ad": 1}, date(2026, 10, 27): {"comment": 1, "dm": 1},
        date(2026, 10, 28): {}, date(2026, 10, 29): {},
    }
    assert r.started_by_source == {"dm": 2, "post": 1, "ad": 1, "story": 1, "comment": 1}
    assert (r.summary.started, r.previous.started) == (6, 1)


def test_first_response_in_business_hours_across_the_weekend_and_summer_time(app, account, history):
    with app.app_context():
        r = build(account)
    days = {d.day: (d.answered, d.median, d.p90) for d in r.response_days if d.answered}
    assert days == {
        date(2026, 10, 23): (1, 4500.0, 4500.0),  # Friday 16:30 → Monday 09:45 local
        date(2026, 10, 24): (1, 0.0, 0.0),  # Saturday: closed
        date(2026, 10, 26): (2, 1500.0, 1800.0),  # 20 min and 30 (from opening)
        date(2026, 10, 27): (1, 7200.0, 7200.0),  # the failed send does not count
    }
    s = r.summary
    assert (s.answered, s.median, s.p90) == (5, 1800.0, 7200.0)
    # E waited past an hour of business time unanswered: 3 of 6 within the hour.
    assert (s.within_hour, s.counted, s.waiting, s.within_share) == (3, 6, 0, 0.5)
    assert (r.previous.answered, r.previous.median) == (1, 600.0)


def test_without_business_hours_every_hour_counts(app, account, history):
    with app.app_context():
        facts.update_settings(account.id, timezone="Europe/Berlin", schedule=None, currency="EUR")
        r = build(account)
    first = {d.day: d.median for d in r.response_days if d.answered}
    # 14:30 UTC Friday → 08:45 UTC Monday, and Saturday's five minutes.
    assert first[date(2026, 10, 23)] == 66 * 3600 + 15 * 60
    assert first[date(2026, 10, 24)] == 300.0


def test_the_time_zone_moves_days_and_hours(app, account, history):
    with app.app_context():
        facts.update_settings(account.id, timezone="America/New_York", schedule=NINE_TO_FIVE, currency="EUR")
        r = report.build(account.id, Period(date(2026, 10, 23), date(2026, 10, 29), "America/New_York"), now=NOW)
    # D's 07:00 UTC message is 03:00 in New York (summer time until 1 November): answered at 04:30, before opening.
    assert r.heatmap[0][3] == 1
    days = {d.day: d.median for d in r.response_days if d.answered}
    assert days[date(2026, 10, 26)] == 0.0  # B 05:00→05:20 and D 03:00→04:30: both before 09:00
    # A: Friday 10:30 → Monday 04:45 in New York: 6.5 hours of Friday.
    assert days[date(2026, 10, 23)] == 6.5 * 3600


def test_heatmap_counts_customer_messages_by_local_weekday_and_hour(app, account, history):
    with app.app_context():
        r = build(account)
    cells = {(day, hour): n for day, row in enumerate(r.heatmap) for hour, n in enumerate(row) if n}
    assert cells == {(4, 16): 1, (5, 11): 1, (0, 10): 2, (0, 8): 1, (1, 12): 1, (1, 9): 1}
    assert (r.summary.customer_messages, r.previous.customer_messages) == (7, 1)


def test_people_replies_and_median_first_response(app, account, history):
    with app.app_context():
        r = build(account)
    people = {p.name: (p.replies, p.answered_first, p.median) for p in r.people}
    assert people == {"Ana": (2, 2, 2850.0), "Bob": (2, 2, 4500.0), "Owner's Instagram app": (1, 1, 0.0)}


def test_people_count_the_conversations_they_marked_done_in_the_period(app, account, history):
    with app.app_context():
        ana, bob = history["ana"].id, history["bob"].id
        conversations.set_status(account.id, history["a"].id, "done", actor_id=ana)
        conversations.set_status(account.id, history["b"].id, "done", actor_id=ana)
        conversations.set_status(account.id, history["d"].id, "done", actor_id=bob)
        db.session.commit()
        # The activity line's times: two inside the week (Berlin), Bob's the Monday after it.
        times = [datetime(2026, 10, 24, 9, tzinfo=timezone.utc), datetime(2026, 10, 29, 22, 30, tzinfo=timezone.utc),
                 datetime(2026, 10, 30, 8, tzinfo=timezone.utc)]
        events = db.session.scalars(db.select(ConversationEvent).where(ConversationEvent.kind == "done")
                                    .order_by(ConversationEvent.id)).all()
        for event, at in zip(events, times):
            event.created_at = at
        db.session.commit()
        r = build(account)
    # 29 Oct 22:30 UTC is 23:30 in Berlin: still the week's last day.
    assert {p.name: p.done for p in r.people} == {"Ana": 2, "Bob": 0, "Owner's Instagram app": 0}


def test_products_posts_ads_and_sales(app, account, history):
    with app.app_context():
        sales.mark_sold(account.id, history["b"].id, product_id=None, quantity="2", amount="99.80",
                        user_id=history["ana"].id)
        sales.mark_not_sold(account.id, history["d"].id, reason="Too expensive", user_id=history["bob"].id)
        r = build(account)
        [dress] = r.products
        assert (dress.product.name, dress.conversations, dress.comments, dress.sold, dress.quantity,
                str(dress.amount)) == ("Red Dress", 1, 1, 1, 2, "99.80")
        assert [(p.key, p.conversations, p.sold, str(p.amount)) for p in r.top_posts] == [("1790001", 2, 1, "99.80")]
        assert [(a.key, a.label, a.conversations, a.sold) for a in r.top_ads] == [("AD-1", "Autumn sale", 1, 0)]
        assert (r.summary.sold, r.summary.not_sold, str(r.summary.amount)) == (1, 1, "99.80")
        sales.clear_outcome(account.id, history["d"].id, user_id=history["ana"].id)
        lines = {c: [activity.describe(e) for e in activity.thread_events(account.id, history[c].id)] for c in "bd"}
    assert lines["b"][-1] == "Ana marked this sold: 2 × Red Dress, 99.80 EUR"
    assert lines["d"][-2:] == ["Bob marked this not sold: Too expensive", "Ana cleared the sale outcome"]


def test_new_messages_are_folded_in_on_the_next_refresh(app, factory, account, history):
    with app.app_context():
        assert build(account).summary.waiting == 0
    factory.message(history["e"], "Free shipping!", out=True, status="sent", sender_kind="staff",
                    sent_by_user_id=history["ana"].id, ts=ms(2026, 10, 27, 11, 40))
    with app.app_context():
        r = build(account)
    assert {d.day: d.median for d in r.response_days if d.answered}[date(2026, 10, 27)] == (1800 + 7200) / 2
    assert {p.name: p.replies for p in r.people}["Ana"] == 3


def test_isolation_between_accounts(app, second_account, history):
    with app.app_context():
        r = build(second_account, Period(date(2026, 10, 23), date(2026, 10, 29), "UTC"))
    assert r.started_by_source["post"] == 1 and r.summary.started == 1
    assert r.summary.customer_messages == 1 and r.products == [] and r.top_ads == []
    assert [p.key for p in r.top_posts] == ["1790001"] and r.top_posts[0].sold == 0


def test_bad_sales_input_is_refused_without_a_row(app, account, second_account, factory, history):
    theirs = factory.product(second_account, "Theirs", "T-1")
    with app.app_context():
        for kwargs, message in [({"product_id": theirs.id, "quantity": "1", "amount": "1"}, "catalogue"),
                                ({"product_id": None, "quantity": "0", "amount": "1"}, "Quantity"),
                                ({"product_id": None, "quantity": "1", "amount": "abc"}, "Amount"),
                                ({"product_id": None, "quantity": "1", "amount": "1.999"}, "two decimals")]:
            with pytest.raises(sales.OutcomeError, match=message):
                sales.mark_sold(account.id, history["b"].id, user_id=None, **kwargs)
        with pytest.raises(sales.NotFound):
            sales.mark_sold(account.id, history["other"].id, product_id=None, quantity="1", amount="1", user_id=None)
        with pytest.raises(sales.OutcomeError):
            sales.mark_not_sold(account.id, history["d"].id, reason="  ", user_id=None)
        assert sales.outcome_view(account.id, history["b"].id).history == 0


def test_schedule_parsing():
    assert hours.parse_schedule({0: ("09:00", "17:30"), 5: ("", "")}) == {0: [(540, 1050)]}
    with pytest.raises(hours.HoursError, match="after opening"):
        hours.parse_schedule({0: ("17:00", "09:00")})
    with pytest.raises(hours.HoursError, match="not a time"):
        hours.parse_schedule({0: ("9am", "17:00")})


def test_a_period_without_conversations(app, account, history):
    with app.app_context():
        r = build(account, Period(date(2025, 1, 1), date(2025, 1, 7), "Europe/Berlin"))
    assert (r.summary.started, r.summary.answered, r.summary.median, r.summary.within_share) == (0, 0, None, None)
    assert all(d.median is None for d in r.response_days) and r.people[0].replies == 0
