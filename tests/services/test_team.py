"""Team services with their real parts: invite emails through a real SMTP server (aiosmtpd),
round-robin among online agents over Redis, and the one function that fills reply variables."""

from __future__ import annotations

import socket

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Conversation
from inbox.services import assignees, presence, team
from inbox.services.reply_variables import customer_values, fill_variables


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(app_config):
    handler = _Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    app_config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=controller.port, MAIL_USE_TLS=False,
                      MAIL_DEFAULT_SENDER="inbox@shop.example",
                      MAIL_SUPPRESS_SEND=False)  # Flask-Mail suppresses sends under TESTING
    yield handler
    controller.stop()


def test_an_invite_is_emailed_when_mail_is_configured(smtp, app, factory):
    account = factory.account(username="rosewood")
    admin = factory.staff_on(account, "admin", name="Ana")
    with app.app_context():
        made = team.invite(account.id, "ben@example.com", "agent", invited_by=admin.id,
                           accept_url=lambda token: f"https://inbox.example/invite/{token}")
    assert made.emailed and made.email_error is None
    (recipients, content), = smtp.messages
    assert recipients == ["ben@example.com"]
    assert f"https://inbox.example/invite/{made.token}" in content
    assert "Ana invited you" in content and "@rosewood" in content


def test_an_invite_whose_email_fails_still_gives_the_link(app_config, request):
    app_config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=_free_port(), MAIL_USE_TLS=False,
                      MAIL_SUPPRESS_SEND=False)  # nobody listens there
    app, factory = request.getfixturevalue("app"), request.getfixturevalue("factory")
    account = factory.account()
    with app.app_context():
        made = team.invite(account.id, "ben@example.com", "agent", accept_url=lambda t: f"http://x/invite/{t}")
        assert not made.emailed and "copy the link" in made.email_error
        assert team.find_invite(made.token) is not None


def test_round_robin_gives_new_conversations_to_online_agents_in_turn(app, factory, sim_webhooks, connected, run_jobs):
    account = connected.account
    ben = factory.staff_on(account, "agent", name="Ben")
    cy = factory.staff_on(account, "agent", name="Cy")
    dee = factory.staff_on(account, "agent", name="Dee")  # online but away
    factory.staff_on(account, "agent", name="Eli")  # offline
    with app.app_context():
        assignees.set_settings(account.id, auto_assign=True)
        presence.mark_online([account.id], ben.id)
        presence.mark_online([account.id], cy.id)
        presence.mark_online([account.id], dee.id)
        team.set_away(dee.id, True)
    customers = [connected.ig.add_customer(f"buyer{n}") for n in range(4)]
    for customer in customers:
        assert customer.sends_text("hello").delivery.status == 200
    run_jobs()
    with app.app_context():
        owners = list(db.session.scalars(select(Conversation.assignee_user_id).order_by(Conversation.id)))
    assert sorted(owners) == sorted([ben.id, cy.id, ben.id, cy.id])
    # A second message in a conversation is not a new conversation: nothing changes.
    customers[0].sends_text("still there?")
    run_jobs()
    with app.app_context():
        assert list(db.session.scalars(select(Conversation.assignee_user_id).order_by(Conversation.id))) == owners


def test_without_round_robin_new_conversations_stay_unassigned(app, factory, sim_webhooks, connected, run_jobs):
    ben = factory.staff_on(connected.account, "agent")
    with app.app_context():
        presence.mark_online([connected.account.id], ben.id)
    connected.ig.add_customer("solo").sends_text("hello")
    run_jobs()
    with app.app_context():
        assert db.session.scalar(select(Conversation.assignee_user_id)) is None


def test_one_fill_function_for_saved_replies_and_automations():
    values = customer_values("Maria Kovacs", "maria.k", None, "Ana")
    assert fill_variables("Hi {first_name} ({username}), {product} costs {price}. — {agent}", values) == \
        "Hi Maria (@maria.k), costs. — Ana"
    assert fill_variables("{ first_name }! {nope}", customer_values(None, "maria.k", None, None)) == "maria.k!"
