"""`flask --app inbox accounts …`: accounts, tokens, grants, the daily check now."""

from __future__ import annotations

import json

from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Account, Membership, StaffUser
from inbox.services.graph import WEBHOOK_FIELDS

NEEDED = set(WEBHOOK_FIELDS["instagram"])


def test_accounts_add_list_set_token_and_grant(runner, app):
    result = runner.invoke(args=["accounts", "add", "17841400000000001", "--username", "@redshop", "--token", "IGAAsecret"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(args=["accounts", "add", "17841400000000001"]).exit_code != 0
    assert "numeric" in runner.invoke(args=["accounts", "add", "not-a-number"]).output

    with app.app_context():
        account = db.session.scalar(select(Account))
        # Encrypted at rest: the token is not in the row.
        assert account.access_token_encrypted and "IGAAsecret" not in account.access_token_encrypted
        from inbox.services.accounts import access_token
        assert access_token(account) == "IGAAsecret"

    result = runner.invoke(args=["accounts", "set-token", "17841400000000001", "--token", "IGAAnew",
                                 "--token-expires", "2027-01-20T00:00:00"])
    assert result.exit_code == 0, result.output
    listed = json.loads(runner.invoke(args=["accounts", "list", "--json"]).output)
    assert listed[0]["username"] == "redshop" and listed[0]["has_token"]
    assert listed[0]["token_expires_at"].startswith("2027-01-20")

    runner.invoke(args=["users", "create", "agent@shop.example", "--password", "secret password 1"])
    result = runner.invoke(args=["accounts", "grant", "17841400000000001", "agent@shop.example", "--role", "agent"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(args=["accounts", "grant", "17841400000000001", "nobody@shop.example"]).exit_code != 0
    with app.app_context():
        membership = db.session.scalar(select(Membership))
        assert membership.role == "agent"
        assert db.session.get(StaffUser, membership.user_id).email == "agent@shop.example"


def test_the_cli_runs_the_check_now(sim, app, runner, connected):
    connected.ig.unsubscribe()
    result = runner.invoke(args=["accounts", "refresh-tokens"])
    assert result.exit_code == 0, result.output
    assert f"@{connected.ig.username}: webhook subscription restored" in result.output
    assert connected.ig.subscribed_fields >= NEEDED

    one = runner.invoke(args=["accounts", "refresh-tokens", "--account", connected.ig.ig_user_id])
    assert one.exit_code == 0 and "webhooks subscribed" in one.output
    assert runner.invoke(args=["accounts", "refresh-tokens", "--account", "999"]).exit_code != 0
