"""`flask --app inbox identities refresh|list|doctor`."""

from __future__ import annotations

import pytest

from inbox.extensions import db
from inbox.models import Account, Identity, utcnow
from tests.services.test_identities import _note_in_transactions
from tests.services.test_refresh_identities import _shop_with_customers
from tests.support.databases import is_postgres
from tests.support.stored import count, identity_rows, self_rows


def test_refresh_from_the_command_line(app, runner, sim, connected):
    account = connected.account
    _shop_with_customers(app, connected, ["jude", "kemal"])
    result = runner.invoke(args=["identities", "refresh", "--account", account.ig_user_id])
    assert result.exit_code == 0, result.output
    assert "Refreshed 2 of 2, 0 failed." in result.output
    assert {r.username for r in identity_rows(app, account.id).values()} == {"jude", "kemal"}
    queued = runner.invoke(args=["identities", "refresh", "--account", account.ig_user_id, "--queue"])
    assert "Queued run" in queued.output
    again = runner.invoke(args=["identities", "refresh", "--account", account.ig_user_id])
    assert "already going" in again.output  # the queued one is the account's refresh
    assert runner.invoke(args=["identities", "refresh", "--account", "1234"]).exit_code != 0


def test_cli_lists_people_with_the_display_rule_and_its_hint(app, runner, sim, connected, factory, run_jobs):
    account, shop = connected.account, connected.ig
    hana = shop.add_customer("hana", name="Hana")
    hana.sends_text("hi", deliver=False)
    factory.conversation(account, hana.igsid)
    factory.conversation(account, "17840000000004242")  # an id Instagram does not know
    _note_in_transactions(app, account.id, [hana.igsid, "17840000000004242"])
    run_jobs()

    lines = runner.invoke(args=["identities", "list", "--account", account.ig_user_id]).output.splitlines()
    assert f"{hana.igsid}\t@hana" in lines
    unknown = next(line for line in lines if line.startswith("17840000000004242"))
    assert "Instagram user ·4242" in unknown and "Refresh identities" in unknown and "does not know" in unknown
    assert runner.invoke(args=["identities", "list", "--account", "404"]).exit_code != 0


def test_doctor_reports_and_repairs_imported_rows(app, runner, factory, session_db):
    account = factory.account(username="importshop")
    other = factory.account(username="othershop")
    factory.identity(account, account.ig_user_id, username="importshop")  # the account itself
    factory.identity(account, "5550001", username="alice")  # fine
    factory.identity(account, " 5550001 ", username="alice")  # the same person with spaces
    factory.identity(account, " 5550002", username="bob")  # spaces only
    factory.identity(account, "not-an-id", username="mallory")
    factory.identity(account, "5550003", username="user_******", name="C***l", last_fetched_at=utcnow())
    factory.identity(account, "5550004", username="@dora")
    factory.identity(account, "5550005", username="eve", profile_pic_url="javascript:alert(1)")
    factory.identity(account, "5550006", username="finn", profile_pic_url="https://tracker.example/p.jpg")
    factory.identity(other, account.ig_user_id, username="importshop")  # another account may talk to it

    report = runner.invoke(args=["identities", "doctor"])
    assert report.exit_code == 1, report.output
    rules = [line.split("\t")[1] for line in report.output.splitlines() if line.startswith("found\t")]
    assert sorted(rules) == ["bad_igsid", "bad_igsid", "bad_picture", "bad_picture", "duplicate", "masked_name",
                             "masked_name", "self", "username_format"]
    assert "run with --fix" in report.output
    assert count(app, Identity) == 10  # reporting changes nothing

    fixed = runner.invoke(args=["identities", "doctor", "--fix"])
    assert fixed.exit_code == 0, fixed.output
    assert "Repaired 9 problem(s)" in fixed.output
    rows = identity_rows(app, account.id)
    assert sorted(rows) == ["5550001", "5550002", "5550003", "5550004", "5550005", "5550006"]
    assert rows["5550002"].username == "bob" and rows["5550004"].username == "dora"
    assert rows["5550003"].username is None and rows["5550003"].last_fetched_at is None  # refetched next time
    assert rows["5550005"].profile_pic_url is None and rows["5550006"].profile_pic_url is None
    assert self_rows(app) == []
    assert account.ig_user_id in identity_rows(app, other.id)  # not a rule break for another account

    again = runner.invoke(args=["identities", "doctor"])
    assert again.exit_code == 0 and "All identity rows follow the rules." in again.output


@pytest.mark.skipif(is_postgres(),
                    reason="SQLite only: PostgreSQL enforces the foreign key, so no orphan can exist there")
def test_doctor_removes_rows_of_a_deleted_account(app, runner, factory):
    account = factory.account()
    factory.identity(account, "5550009", username="zed")
    with app.app_context():
        db.session.execute(Account.__table__.delete().where(Account.id == account.id))
        db.session.commit()
    report = runner.invoke(args=["identities", "doctor", "--fix"])
    assert "fixed\torphan" in report.output
    assert count(app, Identity) == 0
