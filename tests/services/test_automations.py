"""Keyword automations: matching, never twice, never to our own comments, pause, dry run, budgets;
the sends go through the send path to the simulator as `automation`."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from inbox.extensions import db
from inbox.models import AutomationRun, Comment, Message
from inbox.services import automations
from inbox.services.automations import AutomationError, matched_keyword
from inbox.services.reply_variables import fill_variables
from tests.support.jobs import failed_jobs


def test_keywords_match_whole_words_in_any_case_or_accent_and_emoji_anywhere():
    words = ["precio", "how much", "💰"]
    assert matched_keyword(words, "¿PRÉCIO?") == "precio"
    assert matched_keyword(words, "Precios") is None  # a whole word, not a prefix
    assert matched_keyword(words, "How   MUCH is it") == "how much"
    assert matched_keyword(words, "somehow muchness") is None
    assert matched_keyword(words, "take my💰") == "💰"
    assert matched_keyword(["❤️"], "love it ❤") == "❤️"  # with or without the variation selector
    assert matched_keyword(words, "") is None


def test_template_variables_are_filled_and_never_left_as_braces():
    text = fill_variables("Hi {first_name}! {product} is {price}. {post} {link} {nonsense}",
                          {"first_name": "Anna", "product": "Red Dress", "price": "89 EUR", "post": "“Red”",
                           "link": "https://www.instagram.com/p/x/"})
    assert text == "Hi Anna! Red Dress is 89 EUR. “Red” https://www.instagram.com/p/x/"
    assert fill_variables("Hi {first_name}, thanks", {}) == "Hi, thanks"


def test_a_rule_is_checked_before_it_is_saved(app, account, factory):
    with app.app_context():
        with pytest.raises(AutomationError, match="keyword"):
            automations.check_rule(account.id, name="x", keywords=" , ", template="hi")
        with pytest.raises(AutomationError, match="Unknown variable"):
            automations.check_rule(account.id, name="x", keywords="price", template="hi {nam}")
        with pytest.raises(AutomationError, match="Not a post"):
            automations.check_rule(account.id, name="x", keywords="price", template="hi", media_ids=["123"])


def _rule(app, account_id, **values):
    with app.app_context():
        spec = automations.check_rule(account_id, **{"name": "Price", "keywords": "price, precio",
                                                     "template": "Hi {first_name}! {product} costs {price}: {link}",
                                                     **values})
        return automations.create_automation(account_id, spec).id


def runs(app) -> list[AutomationRun]:
    with app.app_context():
        rows = list(db.session.scalars(select(AutomationRun).order_by(AutomationRun.id)))
        db.session.expunge_all()
        return rows


def automated(app) -> list[Message]:
    with app.app_context():
        rows = list(db.session.scalars(select(Message).where(Message.sender_kind == "automation")))
        db.session.expunge_all()
        return rows


@pytest.fixture
def shop(sim_webhooks, connected, factory):
    """The connected shop with a post linked to a product (89 EUR) and a commenter who never wrote a DM."""
    ig = connected.ig
    media = ig.add_post("Our red linen dress")
    product = factory.product(connected.account, "Red Dress", "RD-1", price="89.00", currency="EUR")
    factory.link(factory.post(connected.account, media.id, caption="Our red linen dress", is_own=True,
                              permalink="https://www.instagram.com/p/red/"), product)
    return ig, media, ig.add_customer("anna.b")


def test_a_matching_comment_gets_one_private_reply_through_the_send_path(shop, connected, app, run_jobs):
    ig, media, anna = shop
    _rule(app, connected.account.id, public_replies=["Sent you a DM, {username}!"])
    asked = anna.comments_on(media, "PRECIO?? 😍")
    ig.sim.settle()
    run_jobs()
    ig.sim.settle()
    run_jobs()
    assert [r.text for r in anna.received] == ["Hi anna.b! Red Dress costs 89 EUR: https://www.instagram.com/p/red/"]
    (sent,) = automated(app)
    assert sent.status == "sent" and sent.mid and sent.sender_kind == "automation"
    (run,) = runs(app)
    assert run.outcome == "fired" and "precio" in run.reason and run.message_id == sent.id
    public = [c for c in ig.sim.world.comments.values() if c.own]
    assert [c.text for c in public] == ["Sent you a DM, @anna.b!"] and public[0].parent_id == asked.mid

    # The job again (a retry, a second worker), a redelivery: nothing more is sent.
    with app.app_context():
        row = db.session.scalar(select(Comment).where(Comment.comment_id == asked.mid))
        assert automations.run_for_comment(row.id) in ("fired", "already")
    run_jobs()
    ig.sim.settle()
    assert len(anna.received) == 1 and len(automated(app)) == 1 and len(runs(app)) == 1
    assert len([c for c in ig.sim.world.comments.values() if c.own]) == 1


def test_no_match_our_own_comments_and_paused_rules_send_nothing(shop, connected, app, run_jobs):
    ig, media, anna = shop
    rule_id = _rule(app, connected.account.id)
    anna.comments_on(media, "prices are fine")  # not the whole word
    ig.comments_on(media, "Ask us the price!")  # our own comment
    with app.app_context():
        automations.set_active(connected.account.id, rule_id, False)
    anna.comments_on(media, "price?")  # the rule is paused
    ig.sim.settle()
    run_jobs()
    assert anna.received == [] and runs(app) == [] and automated(app) == []


def test_the_first_matching_rule_answers_and_a_second_one_says_so(shop, connected, app, run_jobs):
    ig, media, anna = shop
    _rule(app, connected.account.id)
    _rule(app, connected.account.id, name="Dress", keywords="dress")
    anna.comments_on(media, "price of the dress?")
    ig.sim.settle()
    run_jobs()
    assert [(r.outcome, r.automation_id) for r in runs(app)][0][0] == "fired"
    assert runs(app)[1].outcome == "skipped" and "already answered" in runs(app)[1].reason
    ig.sim.settle()
    assert len(anna.received) == 1


def test_chosen_posts_only(shop, connected, app, run_jobs):
    ig, media, anna = shop
    other = ig.add_post("Another post")
    _rule(app, connected.account.id, media_ids=[media.id])
    anna.comments_on(other, "price?")
    ig.sim.settle()
    run_jobs()
    assert runs(app) == []


def test_the_private_reply_budget_defers_sends_instead_of_dropping_them(shop, connected, app, run_jobs):
    ig, media, anna = shop
    app.config["GRAPH_PRIVATE_REPLIES_PER_HOUR"] = 1
    ben = ig.add_customer("ben")
    _rule(app, connected.account.id)
    anna.comments_on(media, "price?")
    ben.comments_on(media, "price please")
    ig.sim.settle()
    run_jobs()
    ig.sim.settle()
    assert len(automated(app)) == 2 and [r.outcome for r in runs(app)] == ["fired", "fired"]
    waiting = [m for m in automated(app) if m.status == "pending"]
    assert len(waiting) == 1 and "budget for private replies" in waiting[0].error_message
    assert len(anna.received) + len(ben.received) == 1
    assert failed_jobs(app) == []  # the deferred send waits for RQ's retry; nothing is lost


def test_dry_run_lists_recent_matches_and_sends_nothing(shop, connected, app, run_jobs):
    ig, media, anna = shop
    anna.comments_on(media, "precio?")
    anna.comments_on(media, "nice")
    ig.sim.settle()
    with app.app_context():
        matches = automations.dry_run(connected.account.id, ["Précio"])
        assert [(c.text, k) for c, k in matches] == [("precio?", "Précio")]
    run_jobs()
    assert anna.received == [] and runs(app) == []
