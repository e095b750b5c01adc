"""Identities through real webhooks: ingestion notes each participant, first contact fetches once."""

from __future__ import annotations

from inbox.jobs import get_queue
from inbox.models import Message
from tests.support.jobs import failed_jobs
from tests.support.stored import count, identity_rows, self_rows


def test_webhooks_make_one_profile_fetch_per_person_and_never_a_self_row(
        app, sim_webhooks, connected, run_jobs):
    account, shop = connected.account, connected.ig
    alice = shop.add_customer("alice", name="Alice")
    bob = shop.add_customer("bob", name="Bob")
    for i in range(5):  # a burst from one person
        assert alice.sends_text(f"message {i}").delivery.status == 200
    bob.sends_text("hello")
    shop.types_in_app(alice, "Thanks, Alice!")  # an echo: the account is the sender
    sent = alice.sends_attachment("image")
    alice.reacts(sent.mid)

    with app.app_context():
        queued = get_queue("default").job_ids
    assert len([j for j in queued if "fetch_profile" in j]) == 2  # one per person, whatever the burst
    run_jobs()

    assert failed_jobs(app) == []
    people = identity_rows(app, account.id)
    assert {k: (v.username, v.name) for k, v in people.items()} == {
        alice.igsid: ("alice", "Alice"), bob.igsid: ("bob", "Bob")}
    assert self_rows(app) == []
    assert count(app, Message) == 8
    assert len(sim_webhooks.calls_to("profile")) == 2

    # Known and fresh: more messages fetch nothing.
    alice.sends_text("one more")
    with app.app_context():
        assert [j for j in get_queue("default").job_ids if "fetch_profile" in j] == []


def test_an_echo_to_someone_who_never_wrote_records_no_consent_and_keeps_the_message(
        app, sim_webhooks, connected, run_jobs):
    account, shop = connected.account, connected.ig
    carol = shop.add_customer("carol")  # the owner writes first, from the Instagram app
    shop.types_in_app(carol, "Hi Carol, your order is ready")
    run_jobs()
    row = identity_rows(app, account.id)[carol.igsid]
    assert "only after the person has written" in row.last_error and row.username is None
    assert count(app, Message) == 1 and self_rows(app) == []
