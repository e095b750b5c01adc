"""The flask --app inbox command groups: users and accounts."""

from __future__ import annotations

import json

from sqlalchemy import select

from inbox.extensions import db
from inbox.models import Account, Membership, StaffUser


def test_users_create_list_and_set_password(runner, app, client):
    result = runner.invoke(args=["users", "create", "ana@shop.example", "--name", "Ana", "--password", "secret password 1"])
    assert result.exit_code == 0, result.output
    assert "Created ana@shop.example" in result.output
    duplicate = runner.invoke(args=["users", "create", "ANA@shop.example", "--password", "secret password 1"])
    assert duplicate.exit_code != 0 and "already exists" in duplicate.output
    short = runner.invoke(args=["users", "create", "bo@shop.example", "--password", "short"])
    assert short.exit_code != 0 and "at least 10" in short.output

    listed = runner.invoke(args=["users", "list"])
    assert "ana@shop.example" in listed.output and "Ana" in listed.output

    result = runner.invoke(args=["users", "set-password", "ana@shop.example", "--password", "another password 2"])
    assert result.exit_code == 0, result.output
    assert client.post("/login", data={"email": "ana@shop.example", "password": "secret password 1"}).status_code == 401
    assert client.post("/login", data={"email": "ana@shop.example", "password": "another password 2"}).status_code == 302


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
