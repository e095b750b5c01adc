"""`flask --app inbox staff|labels|replies …` and `conversations assign|note|label`."""

from __future__ import annotations

import re

from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Conversation, ConversationLabel, Membership, Note, SavedReply
from tests.support.factory import PASSWORD


def test_staff_invite_list_remove(runner, app, client, factory):
    account = factory.account("17841400000000001", "shop")
    factory.staff_on(account, "admin", email="ana@shop.example")
    result = runner.invoke(args=["staff", "invite", "ben@shop.example", "--account", "17841400000000001",
                                 "--role", "agent"])
    assert result.exit_code == 0, result.output
    url = re.search(r"http://\S+/invite/(\S+)", result.output)
    assert url, result.output
    accepted = client.post(f"/invite/{url.group(1)}", data={"name": "Ben", "password": PASSWORD,
                                                             "password_confirm": PASSWORD})
    assert accepted.status_code == 302
    listed = runner.invoke(args=["staff", "list", "--account", "17841400000000001"])
    assert "ana@shop.example\tadmin" in listed.output and "ben@shop.example\tagent" in listed.output
    bad = runner.invoke(args=["staff", "invite", "not-an-email", "--account", "17841400000000001"])
    assert bad.exit_code != 0 and "valid email" in bad.output
    removed = runner.invoke(args=["staff", "remove", "ben@shop.example", "--account", "17841400000000001"])
    assert removed.exit_code == 0, removed.output
    assert client.get(f"/accounts/{account.id}/").status_code == 404  # Ben's session lost the account
    with app.app_context():
        assert db.session.scalar(select(Membership.id).join(Membership.user)
                                 .where(Membership.user.has(email="ben@shop.example"))) is None
    last = runner.invoke(args=["staff", "remove", "ana@shop.example", "--account", "17841400000000001"])
    assert last.exit_code != 0 and "last admin" in last.output
    unknown = runner.invoke(args=["staff", "list", "--account", "999"])
    assert unknown.exit_code != 0 and "No account 999" in unknown.output


def test_conversations_assign_note_label_and_labels_replies(runner, app, factory):
    account = factory.account("17841400000000002", "shop")
    factory.staff_on(account, "admin", email="ana@shop.example", name="Ana")
    factory.staff_on(account, "agent", email="ben@shop.example", name="Ben")
    outsider = factory.staff_on(factory.account(), "admin", email="olga@elsewhere.example")
    conversation = factory.conversation(account, messages=["hi"])
    cid = str(conversation.id)
    assert runner.invoke(args=["conversations", "assign", cid, "--to", "ben@shop.example"]).exit_code == 0
    with app.app_context():
        assert db.session.get(Conversation, conversation.id).assignee_user_id is not None
    refused = runner.invoke(args=["conversations", "assign", cid, "--to", outsider.email])
    assert refused.exit_code != 0 and "not on the team" in refused.output
    assert runner.invoke(args=["conversations", "assign", cid, "--none"]).exit_code == 0
    with app.app_context():
        assert db.session.get(Conversation, conversation.id).assignee_user_id is None
    noted = runner.invoke(args=["conversations", "note", cid, "--by", "ana@shop.example", "@ben call her back"])
    assert noted.exit_code == 0, noted.output
    assert runner.invoke(args=["conversations", "note", cid, "--by", outsider.email, "x"]).exit_code != 0
    added = runner.invoke(args=["labels", "add", "--account", "17841400000000002", "VIP", "--color", "purple"])
    assert added.exit_code == 0, added.output
    assert runner.invoke(args=["labels", "add", "--account", "17841400000000002", "vip"]).exit_code != 0
    assert runner.invoke(args=["conversations", "label", cid, "VIP"]).exit_code == 0
    missing = runner.invoke(args=["conversations", "label", cid, "Nope"])
    assert missing.exit_code != 0 and "No label" in missing.output
    reply = runner.invoke(args=["replies", "add", "--account", "17841400000000002", "--shortcut", "hi",
                                "Hi {first_name}!"])
    assert reply.exit_code == 0, reply.output
    bad = runner.invoke(args=["replies", "add", "--account", "17841400000000002", "--shortcut", "x", "{oops}"])
    assert bad.exit_code != 0 and "Unknown variable" in bad.output
    with app.app_context():
        assert db.session.scalar(select(Note.text)) == "@ben call her back"
        assert db.session.scalar(select(ConversationLabel.conversation_id)) == conversation.id
        assert db.session.scalar(select(SavedReply.shortcut)) == "hi"
