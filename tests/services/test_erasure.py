"""Erasing a customer leaves no row or file that names them; retention deletes old messages.

The customers write through the simulator over real webhooks (texts, a photo kept as a
file, a reaction, their profile and picture fetched), staff reply, and then one of them is
erased: by the CLI, and from the person's page by an admin.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from inbox.extensions import db
from inbox.models import (Account, Attachment, Comment, Conversation, ConversationEvent, ConversationLabel, Erasure,
                          Identity, JobRun, Label, Message, Note, NoteMention, utcnow)
from inbox.services import assignees, comments, erasure, labels, notes, sending
from inbox.services.storage import AREAS, get_storage, new_key
from tests.support.databases import is_postgres

ALICE_TEXTS = ("Alice asks about the linen dress", "Alice sends her address: 12 Rose Lane")
ALICE_COMMENT = "Alice comments: is it lined?"
BOB_TEXT = "Bob wonders about the silk scarf"
ALICE_NOTE = "@ana Alice Rosewood wants the M by Friday"


@pytest.fixture
def app_config(app_config):
    app_config["SEND_RETRY_INTERVALS"] = [0]
    return app_config


@pytest.fixture
def shop(app, sim_webhooks, connected, run_jobs, factory):
    """Alice and Bob wrote to the shop; staff answered Alice; her photo and picture are kept."""
    alice = connected.ig.add_customer("alice.rosewood", name="Alice Rosewood")
    bob = connected.ig.add_customer("bob.b", name="Bob Builder")
    first = alice.sends_text(ALICE_TEXTS[0])
    alice.sends_text(ALICE_TEXTS[1])
    alice.sends_attachment("image")
    bob.sends_text(BOB_TEXT)
    bob.sends_attachment("image")
    run_jobs()  # profiles, pictures, media files
    with app.app_context():
        conversation = db.session.scalar(select(Conversation).where(Conversation.customer_igsid == alice.igsid))
        sending.queue_reply(conversation.account_id, conversation.id, None, "We have it in M, Alice!",
                            uuid.uuid4().hex)
    run_jobs()
    sim_webhooks.settle()
    alice.reacts(first.mid)
    # Comments: hers on a post, Bob's reply that @mentions her, the shop's public and private replies.
    post = connected.ig.add_post("Red linen dress, new in")
    asked = alice.comments_on(post, ALICE_COMMENT)
    bob.comments_on(post, "@alice.rosewood same question", reply_to=asked.mid)
    connected.ig.comments_on(post, "Sent you a DM, Alice!", reply_to=asked.mid)
    sim_webhooks.settle()
    with app.app_context():
        comment_id = db.session.scalar(select(Comment.id).where(Comment.comment_id == asked.mid))
        comments.reply_privately(connected.account.id, comment_id, None, "Here is the link, Alice", uuid.uuid4().hex)
    run_jobs()
    sim_webhooks.settle()
    with app.app_context():  # a background run that failed on her keeps her in its summary
        db.session.add(JobRun(kind="refresh_identities", account_id=connected.account.id, rq_job_id="run-x",
                              state="finished", summary={"errors": [{"igsid": alice.igsid, "name": "Alice Rosewood",
                                                                     "error": "x"},
                                                                    {"igsid": bob.igsid, "error": "y"}]}))
        db.session.commit()
    admin = factory.staff_on(connected.account, "admin", name="Ana")
    with app.app_context():  # the team's notes, label and assignment about her
        conversation = db.session.scalar(select(Conversation).where(Conversation.customer_igsid == alice.igsid))
        notes.add_note(conversation.account_id, conversation.id, admin.id, ALICE_NOTE)
        vip = labels.create_label(conversation.account_id, "VIP")
        labels.add_label(conversation.account_id, conversation.id, vip.id, actor_id=admin.id)
        assignees.assign(conversation.account_id, conversation.id, admin.id, actor_id=admin.id)
    return alice, bob, admin


def _needles(alice) -> list[str]:
    return [alice.igsid, "alice.rosewood", "Alice Rosewood", *ALICE_TEXTS, "We have it in M, Alice!", ALICE_COMMENT,
            "Sent you a DM, Alice!", "Here is the link, Alice", ALICE_NOTE]


def rows_naming(app, needles: list[str]) -> list[str]:
    """Every row of every table (and SQLite's search index) that contains one of the needles."""
    found = []
    with app.app_context():
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(select(table)).mappings():
                blob = json.dumps({k: (bytes(v).decode("utf-8", "replace") if isinstance(v, (bytes, memoryview))
                                       else v) for k, v in row.items()}, default=str, ensure_ascii=False)
                found += [f"{table.name}: {needle}" for needle in needles if needle in blob]
        if not is_postgres():
            for needle in needles:
                if len(needle) >= 3:
                    hits = db.session.execute(text("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH :q"),
                                              {"q": '"' + needle.replace('"', '""') + '"'}).scalar()
                    found += [f"messages_fts: {needle}"] * (hits or 0)
    return found


def stored_files(app) -> set[str]:
    root = Path(app.config["MEDIA_ROOT"])
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def file_keys(app, igsid: str) -> set[str]:
    with app.app_context():
        keys = set(db.session.scalars(
            select(Attachment.storage_key).join(Message, Message.id == Attachment.message_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Conversation.customer_igsid == igsid, Attachment.storage_key.is_not(None))))
        keys |= set(db.session.scalars(select(Identity.profile_pic_key).where(
            Identity.igsid == igsid, Identity.profile_pic_key.is_not(None))))
        return keys


def test_the_cli_erases_a_customer_and_nothing_names_them_after(app, shop, connected, runner):
    alice, bob, _ = shop
    before = rows_naming(app, _needles(alice))
    assert {"messages", "conversations", "identities", "webhook_deliveries", "reactions", "comments", "notes",
            "conversation_events"} <= \
        {hit.split(":")[0] for hit in before}  # the check can fail: she is everywhere now
    alice_files, bob_files = file_keys(app, alice.igsid), file_keys(app, bob.igsid)
    assert alice_files and bob_files and alice_files | bob_files <= stored_files(app)

    result = runner.invoke(args=["customers", "erase", "--account", connected.account.ig_user_id,
                                 "--igsid", alice.igsid, "--yes"])
    assert result.exit_code == 0, result.output
    assert "messages" in result.output and alice.igsid not in result.output

    assert rows_naming(app, _needles(alice)) == []
    with app.app_context():  # her attachments name her only through their message: gone with it
        assert db.session.scalar(select(func.count()).select_from(Attachment)) == 1
    remaining = stored_files(app)
    assert not alice_files & remaining and bob_files <= remaining
    # Bob is untouched, and his part of shared deliveries is still there to replay.
    assert rows_naming(app, [bob.igsid, BOB_TEXT])
    with app.app_context():
        assert db.session.scalar(select(Conversation.id).where(Conversation.customer_igsid == bob.igsid))
        assert db.session.scalar(select(Comment.text).where(Comment.text.contains("same question"))) == \
            "@[erased] same question"  # Bob's comment stays, without her name
        run = db.session.scalar(select(JobRun))
        assert [e["igsid"] for e in run.summary["errors"]] == [bob.igsid]
        # The team's notes about her, their mentions, her label and every activity line went with her.
        assert db.session.scalar(select(func.count()).select_from(Note)) == 0
        assert db.session.scalar(select(func.count()).select_from(NoteMention)) == 0
        assert db.session.scalar(select(func.count()).select_from(ConversationLabel)) == 0
        assert db.session.scalar(select(func.count()).select_from(ConversationEvent)) == 0
        assert db.session.scalar(select(func.count()).select_from(Label)) == 1  # the label itself stays
        audit = db.session.scalar(select(Erasure))
        assert (audit.kind, audit.status, audit.requested_by) == ("customer", "done", "cli")
        assert audit.counts["messages"] >= 3 and audit.counts["files"] == len(alice_files)

    again = runner.invoke(args=["customers", "erase", "--account", connected.account.ig_user_id,
                                "--igsid", alice.igsid, "--yes"])
    assert again.exit_code != 0 and "nothing" in again.output


def test_an_admin_erases_a_customer_from_their_page(app, shop, connected, client, auth):
    alice, bob, admin = shop
    auth.login(admin)
    account_id = connected.account.id
    page = client.get(f"/accounts/{account_id}/people/{alice.igsid}")
    assert page.status_code == 200 and "Erase customer" in page.text and "@alice.rosewood" in page.text
    # Without the confirmation, nothing happens.
    client.post(f"/accounts/{account_id}/people/{alice.igsid}/erase", data={})
    assert rows_naming(app, [alice.igsid])
    done = client.post(f"/accounts/{account_id}/people/{alice.igsid}/erase", data={"confirm": "erase"},
                       follow_redirects=True)
    assert done.status_code == 200 and "The customer was erased" in done.text
    assert rows_naming(app, _needles(alice)) == []
    assert client.get(f"/accounts/{account_id}/people/{alice.igsid}").status_code == 404
    with app.app_context():
        # The team's notes about her, their mentions, her label and every activity line went with her.
        assert db.session.scalar(select(func.count()).select_from(Note)) == 0
        assert db.session.scalar(select(func.count()).select_from(NoteMention)) == 0
        assert db.session.scalar(select(func.count()).select_from(ConversationLabel)) == 0
        assert db.session.scalar(select(func.count()).select_from(ConversationEvent)) == 0
        assert db.session.scalar(select(func.count()).select_from(Label)) == 1  # the label itself stays
        audit = db.session.scalar(select(Erasure))
        assert (audit.requested_by, audit.actor_user_id) == ("staff", admin.id)


def test_agents_and_other_accounts_cannot_erase(app, client, auth, factory, account, second_account):
    conversation = factory.conversation(account, "5550001", messages=["hi there"])
    agent = factory.staff_on(account, "agent")
    auth.login(agent)
    page = client.get(f"/accounts/{account.id}/people/5550001")
    assert page.status_code == 200 and "Erase customer" not in page.text
    assert client.post(f"/accounts/{account.id}/people/5550001/erase", data={"confirm": "erase"}).status_code == 403
    outsider = factory.staff_on(second_account, "admin")
    auth.logout()
    auth.login(outsider)
    assert client.post(f"/accounts/{account.id}/people/5550001/erase", data={"confirm": "erase"}).status_code == 404
    with app.app_context():
        assert db.session.get(Conversation, conversation.id) is not None


def test_retention_deletes_old_messages_their_files_and_emptied_conversations(app, factory, account, runner):
    now_ms = int(utcnow().timestamp() * 1000)
    day = 24 * 3600 * 1000
    old = factory.conversation(account, "7000001", messages=[{"text": "ancient words", "ts": now_ms - 40 * day}])
    mixed = factory.conversation(account, "7000002", messages=[{"text": "old question", "ts": now_ms - 31 * day},
                                                               {"text": "new question", "ts": now_ms - day}])
    with app.app_context():
        key = new_key(AREAS[0], "image/png")
        get_storage().put(key, [b"png"])
        first = db.session.scalar(select(Message.id).where(Message.conversation_id == mixed.id)
                                  .order_by(Message.meta_timestamp))
        db.session.add(Attachment(account_id=account.id, message_id=first, type="image", storage_key=key,
                                  media_state="stored"))
        db.session.commit()
    assert key in stored_files(app)
    assert runner.invoke(args=["accounts", "retention", account.ig_user_id, "--days", "30"]).exit_code == 0
    with app.app_context():
        done = erasure.apply_retention()
        assert len(done) == 1 and done[0].counts["messages"] == 2 and done[0].counts["files"] == 1
        texts = set(db.session.scalars(select(Message.text)))
        assert texts == {"new question"}
        assert db.session.get(Conversation, old.id) is None and db.session.get(Conversation, mixed.id) is not None
    assert key not in stored_files(app)
    assert rows_naming(app, ["ancient words", "old question"]) == []
    assert runner.invoke(args=["accounts", "retention", account.ig_user_id, "--off"]).exit_code == 0
    with app.app_context():
        assert db.session.get(Account, account.id).retention_days is None
        assert erasure.apply_retention() == []


def test_retention_leaves_accounts_without_it_alone(app, factory, account):
    factory.conversation(account, "7000003", messages=[{"text": "kept forever", "ts": 1_000_000}])
    with app.app_context():
        assert erasure.apply_retention() == []
        db.session.execute(update(Account).values(retention_days=None))
        assert db.session.scalar(select(Message.text)) == "kept forever"


def test_erasing_an_unknown_customer_says_so(app, account):
    with app.app_context(), pytest.raises(erasure.NothingToErase):
        erasure.erase_customer(account.id, "123456", requested_by="cli")
    with app.app_context(), pytest.raises(erasure.NothingToErase):
        erasure.erase_customer(account.id, account.ig_user_id, requested_by="cli")
