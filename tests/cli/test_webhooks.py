"""`flask --app inbox webhooks ingest|replay`: the stable JSON-lines interface and replays."""

from __future__ import annotations

import json

from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Account
from tests.support.stored import deliveries, messages
from tests.support.webhooks import ACCOUNT, CUSTOMER, FIXTURES, T0

KEYS = ["type", "account", "conversation_id", "customer_igsid", "mid", "direction", "sender_kind", "action", "reason"]
COMMENT_KEYS = KEYS[:5] + ["comment_id", "media_id"] + KEYS[5:]


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_ingest_prints_one_stable_json_line_per_event(runner, app, account):
    result = runner.invoke(args=["webhooks", "ingest", str(FIXTURES / "text.json"), str(FIXTURES / "echo_text.json"),
                                 str(FIXTURES / "changes_comment.json")])
    assert result.exit_code == 0, result.output
    out = lines(result.output)
    assert [list(line) for line in out] == [KEYS, KEYS, COMMENT_KEYS]
    text, echo, change = out
    assert text["type"] == "message" and text["action"] == "created" and text["account"] == ACCOUNT
    assert (text["customer_igsid"], text["direction"], text["sender_kind"]) == (CUSTOMER, "in", "customer")
    assert isinstance(text["conversation_id"], int) and text["mid"].endswith("text")
    assert (echo["type"], echo["direction"], echo["sender_kind"], echo["action"]) == ("echo", "out", "instagram_app", "created")
    assert echo["conversation_id"] == text["conversation_id"]
    assert change == {"type": "comment", "account": ACCOUNT, "conversation_id": None, "customer_igsid": CUSTOMER,
                      "mid": None, "comment_id": "17900000000000009", "media_id": "18000000000000001",
                      "direction": "in", "sender_kind": "customer", "action": "created", "reason": ""}
    assert [d.origin for d in deliveries(app)] == ["cli", "cli", "cli"]

    again = lines(runner.invoke(args=["webhooks", "ingest", str(FIXTURES / "text.json"),
                                      str(FIXTURES / "changes_comment.json")]).output)
    assert [line["action"] for line in again] == ["duplicate", "duplicate"]


def test_ingest_reads_stdin_too(runner, app, account):
    result = runner.invoke(args=["webhooks", "ingest", "-"], input=(FIXTURES / "image.json").read_bytes())
    assert result.exit_code == 0, result.output
    assert lines(result.output)[0]["action"] == "created"


def test_unknown_accounts_are_ignored_unless_asked_to_create_them(runner, app):
    path = str(FIXTURES / "multi_entry_batch.json")
    out = lines(runner.invoke(args=["webhooks", "ingest", path]).output)
    assert [(o["account"], o["action"]) for o in out] == [
        (ACCOUNT, "ignored"), ("17841400000000002", "ignored"), (ACCOUNT, "ignored")]
    assert out[0]["reason"] == f"unknown account {ACCOUNT}"

    result = runner.invoke(args=["webhooks", "ingest", "--create-accounts", path])
    assert result.exit_code == 0, result.output
    assert [o["action"] for o in lines(result.output)] == ["created", "created", "created"]
    with app.app_context():
        assert sorted(db.session.scalars(select(Account.ig_user_id))) == [ACCOUNT, "17841400000000002"]
    assert len(messages(app)) == 3


def test_a_file_that_is_not_json_is_stored_as_ignored_and_exits_1(runner, app, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    result = runner.invoke(args=["webhooks", "ingest", str(bad)])
    assert result.exit_code == 1
    [line] = lines(result.output)
    assert line["type"] == "invalid" and line["action"] == "ignored" and line["reason"].startswith("not JSON")
    # Stored as ignored with the reason (no replay can fix it), and the command still says it did not apply.
    assert (deliveries(app)[0].status, deliveries(app)[0].error[:8]) == ("ignored", "not JSON")


def test_a_missing_file_is_a_clear_error(runner, app, tmp_path):
    result = runner.invoke(args=["webhooks", "ingest", str(tmp_path / "nope.json")])
    assert result.exit_code != 0 and "nope.json" in result.output
    assert deliveries(app) == []


def test_replay_needs_ids_or_failed_and_reports_unknown_ids(runner, app):
    assert runner.invoke(args=["webhooks", "replay"]).exit_code == 2
    assert runner.invoke(args=["webhooks", "replay", "--failed", "1"]).exit_code == 2
    result = runner.invoke(args=["webhooks", "replay", "4242"])
    assert result.exit_code == 1 and "Delivery 4242: not found" in result.output


def test_replay_applies_an_ignored_delivery_once_its_account_exists(runner, app, factory):
    runner.invoke(args=["webhooks", "ingest", str(FIXTURES / "text.json")])
    [delivery] = deliveries(app)
    assert delivery.status == "ignored" and messages(app) == []
    factory.account(ACCOUNT, "shop")
    result = runner.invoke(args=["webhooks", "replay", str(delivery.id)])
    assert result.exit_code == 0 and f"Delivery {delivery.id}: processed (1 created)" in result.output
    [msg] = messages(app)
    assert msg.meta_timestamp == T0
