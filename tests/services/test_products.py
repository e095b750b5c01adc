"""Product assignment through real webhooks from the simulator.

A shared post or reel, an ad or a shop product referral is evidence. A post already linked to a
product assigns the conversation to it (a link is a reason to assign, never to skip); an
unlinked one is matched by caption against SKUs and keywords (exactly one match links and
assigns); a choice made by hand wins over later automatic evidence. Every decision is an
assignment event with its reason.
"""

from __future__ import annotations

from sqlalchemy import select

from inbox.extensions import db
from inbox.models import AssignmentEvent, Attachment, Message, Post, PostProduct
from inbox.queue import get_queue
from inbox.services.products import assignment, catalogue
from tests.support.stored import conversation_of
from tests.support.jobs import failed_jobs


def _events(app, conversation_id):
    with app.app_context():
        return [(e.source, e.outcome, e.reason) for e in db.session.scalars(
            select(AssignmentEvent).where(AssignmentEvent.conversation_id == conversation_id)
            .order_by(AssignmentEvent.id))]


def _sku_of(app, conv):
    with app.app_context():
        if conv.product_id is None:
            return None
        return catalogue.get_product(conv.account_id, conv.product_id).sku


def _attachment_of(app, account_id, mid):
    with app.app_context():
        return db.session.scalar(select(Attachment.id).join(Message).where(Message.account_id == account_id,
                                                                          Message.mid == mid))


def test_a_post_linked_by_hand_from_one_conversation_assigns_the_next_one_that_shares_it(
        app, sim_webhooks, connected, run_jobs, factory):
    """The seed case: an existing link is a reason to assign, never a reason to skip."""
    account, shop = connected.account, connected.ig
    ana = factory.staff_on(account, "agent", name="Ana")
    dress = factory.product(account, "Red Dress", "RD-1").id
    post = sim_webhooks.add_foreign_post(caption="Our new summer look")  # matches no product on its own
    alice, bob = shop.add_customer("alice"), shop.add_customer("bob")

    sent = alice.shares_post(post)
    run_jobs()
    a = conversation_of(app, account.id, alice.igsid)
    assert a.product_id is None
    assert _events(app, a.id)[-1][1] == "no_match"

    with app.app_context():  # Ana links it from the card in Alice's thread
        assignment.link_attachment(account.id, _attachment_of(app, account.id, sent.mid), dress, ana.id)
    a = conversation_of(app, account.id, alice.igsid)
    assert _sku_of(app, a) == "RD-1" and a.assignment_source == "post_link"

    bob.shares_post(post)  # no text: only the shared post
    run_jobs()
    b = conversation_of(app, account.id, bob.igsid)
    assert _sku_of(app, b) == "RD-1"
    assert b.assignment_source == "post_link"
    source, outcome, reason = _events(app, b.id)[-1]
    assert (source, outcome) == ("post_link", "assigned")
    assert reason.startswith("Assigned to Red Dress (RD-1): the customer shared post ")
    assert "linked to it by hand by Ana on " in reason
    assert failed_jobs(app) == []


def test_auto_link_with_one_match_links_the_post_and_assigns(app, sim_webhooks, connected, run_jobs, factory):
    account, shop = connected.account, connected.ig
    factory.product(account, "Red Dress", "RD-1", keywords="red dress, crimson")
    factory.product(account, "Blue Scarf", "BS-2", keywords="scarf")
    alice, bob = shop.add_customer("alice"), shop.add_customer("bob")
    post = sim_webhooks.add_foreign_post(caption="The RED DRESS is back! #summer")
    alice.shares_post(post)
    run_jobs()
    a = conversation_of(app, account.id, alice.igsid)
    assert _sku_of(app, a) == "RD-1" and a.assignment_source == "auto_link"
    reason = _events(app, a.id)[-1][2]
    assert "keyword “red dress”" in reason and "linked it automatically" in reason
    with app.app_context():
        link = db.session.scalars(select(PostProduct)).one()
        assert link.auto_linked and link.source_message_id is not None

    bob.shares_post(post)  # the link now exists: assigned through it
    run_jobs()
    b = conversation_of(app, account.id, bob.igsid)
    assert _sku_of(app, b) == "RD-1"
    assert "linked to it automatically on" in _events(app, b.id)[-1][2]


def test_auto_link_with_no_match_and_with_two_matches_records_the_outcome(
        app, sim_webhooks, connected, run_jobs, factory):
    account, shop = connected.account, connected.ig
    factory.product(account, "Red Dress", "RD-1", keywords="dress")
    factory.product(account, "Blue Scarf", "BS-2", keywords="scarf")
    alice, bob = shop.add_customer("alice"), shop.add_customer("bob")
    alice.shares_post(caption="Look at this sunset")
    bob.shares_reel(caption="Dress and scarf combo, both on sale")
    run_jobs()
    a = conversation_of(app, account.id, alice.igsid)
    b = conversation_of(app, account.id, bob.igsid)
    assert a.product_id is None and b.product_id is None
    source, outcome, reason = _events(app, a.id)[-1]
    assert (source, outcome) == ("auto_link", "no_match")
    assert reason.startswith("Shared post ") and "matched no product (caption: “Look at this sunset”)" in reason
    source, outcome, reason = _events(app, b.id)[-1]
    assert outcome == "ambiguous"
    assert reason.startswith("Shared reel ") and "Blue Scarf (BS-2), Red Dress (RD-1)" in reason
    with app.app_context():
        event = db.session.scalars(select(AssignmentEvent).where(AssignmentEvent.conversation_id == b.id)).one()
        assert sorted(c["sku"] for c in event.candidates) == ["BS-2", "RD-1"]
        assert db.session.scalar(select(PostProduct.id)) is None  # nothing linked


def test_keywords_match_whole_words_only_and_blank_keywords_are_ignored(app):
    with app.app_context():
        account_id = _account_id(app)
        ring = catalogue.create_product(account_id, name="Ring", sku="R-1", keywords=" , ring, ,")
        assert ring.keywords == "ring"
        active = catalogue.list_products(account_id)
        assert [m.sku for m in catalogue.match_products(active, "Earrings and a bracelet")] == []
        assert [m.sku for m in catalogue.match_products(active, "Gold RING!")] == ["R-1"]
        assert [m.sku for m in catalogue.match_products(active, "SKU r-1 in stock")] == ["R-1"]
        assert [m.sku for m in catalogue.match_products(active, "SKU R-10 in stock")] == []


def _account_id(app):
    from inbox.services.accounts import add_account

    return add_account("17840000000999999", "kw_shop", token="T").id


def test_a_choice_by_hand_survives_later_automatic_evidence(
        app, sim_webhooks, connected, run_jobs, factory):
    account, shop = connected.account, connected.ig
    ana = factory.staff_on(account, "agent", name="Ana")
    factory.product(account, "Red Dress", "RD-1", keywords="dress")
    scarf = factory.product(account, "Blue Scarf", "BS-2", keywords="scarf").id
    alice = shop.add_customer("alice")
    alice.shares_post(caption="A red dress")
    run_jobs()
    conv = conversation_of(app, account.id, alice.igsid)
    assert _sku_of(app, conv) == "RD-1"
    with app.app_context():
        assignment.set_conversation_product(account.id, conv.id, scarf, ana.id)
    alice.shares_post(caption="This dress in blue?")  # automatic evidence for the dress again
    alice.clicks_ad(post=sim_webhooks.add_foreign_post(caption="dress sale"))
    run_jobs()
    conv = conversation_of(app, account.id, alice.igsid)
    assert _sku_of(app, conv) == "BS-2" and conv.assignment_source == "manual"
    events = _events(app, conv.id)
    assert events[1] == ("manual", "assigned", "Set to Blue Scarf (BS-2) by hand by Ana (was Red Dress (RD-1)).")
    kept = [e for e in events[2:] if e[1] == "kept"]
    assert len(kept) >= 1 and all(r.startswith("Kept Blue Scarf (BS-2): chosen by hand by Ana.") for _, _, r in kept)
    assert kept[0][2].endswith(": recorded, not applied.") and "Red Dress (RD-1)" in kept[0][2]


def test_newer_automatic_evidence_replaces_older_and_a_late_job_does_not_undo_it(
        app, sim_webhooks, connected, run_jobs, factory):
    account, shop = connected.account, connected.ig
    factory.product(account, "Red Dress", "RD-1", keywords="dress")
    factory.product(account, "Blue Scarf", "BS-2", keywords="scarf")
    alice = shop.add_customer("alice")
    alice.shares_post(caption="dress")
    run_jobs()
    alice.shares_post(caption="scarf")
    run_jobs()
    conv = conversation_of(app, account.id, alice.igsid)
    assert _sku_of(app, conv) == "BS-2"

    # An older message whose job runs last (delivered late, back-dated) is recorded, not applied.
    import datetime as dt

    bob = shop.add_customer("bob")
    bob.shares_post(caption="scarf")
    run_jobs()
    bob.shares_post(caption="dress", at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    run_jobs()
    conv = conversation_of(app, account.id, bob.igsid)
    assert _sku_of(app, conv) == "BS-2"
    assert _events(app, conv.id)[-1][1] == "skipped"
    assert "newer evidence already assigned Blue Scarf (BS-2)" in _events(app, conv.id)[-1][2]


def test_an_ad_referral_with_post_id_assigns_through_the_link_and_reads_own_captions_from_graph(
        app, sim_webhooks, connected, run_jobs, factory):
    account, shop = connected.account, connected.ig
    factory.product(account, "Red Dress", "RD-1", keywords="red dress")
    own = shop.add_post("New in: the red dress, all sizes")  # the account's own post: Graph has its caption
    alice, bob = shop.add_customer("alice"), shop.add_customer("bob")
    alice.clicks_ad(post=own, title="Summer sale")  # the ad title matches nothing: the caption does
    run_jobs()
    a = conversation_of(app, account.id, alice.igsid)
    assert _sku_of(app, a) == "RD-1" and a.assignment_source == "auto_link"
    assert len(sim_webhooks.calls_to("media")) == 1
    with app.app_context():
        post = db.session.scalars(select(Post)).one()
        assert post.is_own and post.caption == "New in: the red dress, all sizes" and post.seen_via == "ad"

    bob.clicks_ad(post=own)
    run_jobs()
    b = conversation_of(app, account.id, bob.igsid)
    assert _sku_of(app, b) == "RD-1" and b.assignment_source == "ad"
    assert "the customer came from ad" in _events(app, b.id)[-1][2]
    assert len(sim_webhooks.calls_to("media")) == 1  # linked: no Meta call


def test_an_own_post_shared_without_a_caption_is_read_from_graph(app, sim_webhooks, connected, run_jobs, factory):
    account, shop = connected.account, connected.ig
    factory.product(account, "Blue Scarf", "BS-2")
    own = shop.add_post("Restocked BS-2")
    alice = shop.add_customer("alice")
    alice.shares_post(own, caption="")
    run_jobs()
    conv = conversation_of(app, account.id, alice.igsid)
    assert _sku_of(app, conv) == "BS-2"
    assert "SKU BS-2" in _events(app, conv.id)[-1][2]


def test_shop_product_referrals_by_sku_and_unknown_ids(app, sim_webhooks, connected, run_jobs, factory):
    account, shop = connected.account, connected.ig
    factory.product(account, "Catalogue Bag", "5551234")
    alice, bob = shop.add_customer("alice"), shop.add_customer("bob")
    alice.asks_about_product("5551234")
    bob.asks_about_product("999")
    run_jobs()
    assert _sku_of(app, conversation_of(app, account.id, alice.igsid)) == "5551234"
    b = conversation_of(app, account.id, bob.igsid)
    assert b.product_id is None
    assert _events(app, b.id)[-1][1:] == ("no_match", "The customer asked about shop product 999, which is not in "
                                                      "the catalogue (no product has that SKU).")
    assert failed_jobs(app) == []


def test_the_assignment_job_is_one_per_message_and_idempotent(app, sim_webhooks, connected, run_jobs, factory):
    account, shop = connected.account, connected.ig
    factory.product(account, "Red Dress", "RD-1", keywords="dress")
    alice = shop.add_customer("alice")
    sent = alice.shares_post(caption="dress")
    with app.app_context():
        assert [j for j in get_queue("default").job_ids if "assign" in j] != []
        message_id = db.session.scalar(select(Message.id).where(Message.mid == sent.mid))
    run_jobs()
    with app.app_context():
        assert assignment.assign_from_message(message_id) == []  # a repeat decides nothing again
    conv = conversation_of(app, account.id, alice.igsid)
    assert len(_events(app, conv.id)) == 1


def test_a_legacy_share_without_an_id_and_an_ad_without_a_post_are_recorded_plainly(
        app, sim_webhooks, connected, run_jobs, factory):
    account, shop = connected.account, connected.ig
    factory.product(account, "Red Dress", "RD-1", keywords="summer sale")
    alice, bob = shop.add_customer("alice"), shop.add_customer("bob")
    alice.sends_share()
    bob.clicks_ad(title="Our summer sale", post=sim_webhooks.add_foreign_post(caption=None))
    run_jobs()
    a = conversation_of(app, account.id, alice.igsid)
    assert a.product_id is None
    assert _events(app, a.id)[-1][1:] == (
        "skipped", "The customer shared a post, but Instagram did not send its id: nothing to match.")
    b = conversation_of(app, account.id, bob.igsid)  # the ad's post is not ours: its title is matched
    assert _sku_of(app, b) == "RD-1"
    assert "ad title matched keyword “summer sale”" in _events(app, b.id)[-1][2]
    assert failed_jobs(app) == []


def test_product_decisions_flag_their_live_update_and_a_batch_keeps_the_flag(app):
    from inbox.live.frames import thread_product
    from inbox.live.hub import coalesce

    plain = {"type": "conversation.updated", "account_id": 1, "conversation_id": 7}
    flagged = {**plain, "product": 1}
    assert coalesce([plain, flagged]) == [flagged]  # a new message and a decision in one batch
    with app.test_request_context("/"):
        assert thread_product(plain, 1) is None  # every new message: no panel render
