"""Identities: first contact, soft errors, a dead token, the cache rules and their doctor.

Against the Meta simulator over real HTTP; jobs run for real through RQ.
"""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from inbox.extensions import db
from inbox.jobs import get_queue
from inbox.models import Account, Conversation, Identity, utcnow
from inbox.services import identities
from inbox.services.graph import ConsentRequired
from inbox.services.identities import SelfIdentityError, needs_fetch, note_participant, picture_url
from tests.support.stored import count, identity_rows, self_rows
from tests.support.databases import is_postgres
from tests.support.jobs import failed_jobs

HTMX = {"HX-Request": "true"}


def _note_in_transactions(app, account_id: int, igsids: list[str]) -> None:
    """As ingestion does: note_participant inside each event's transaction, then commit."""
    with app.app_context():
        for igsid in igsids:
            note_participant(account_id, igsid)
            db.session.commit()


def _queued(app, name: str = "default") -> list[str]:
    with app.app_context():
        return get_queue(name).job_ids


# --- First contact -------------------------------------------------------------------

def test_a_burst_of_messages_from_a_new_customer_fetches_the_profile_once(app, sim, connected, factory, run_jobs):
    account, shop = connected.account, connected.ig
    alice = shop.add_customer("alice", name="Alice Liddell", follower_count=120, follows_business=True)
    alice.sends_text("hi", deliver=False)
    factory.conversation(account, alice.igsid)

    _note_in_transactions(app, account.id, [alice.igsid] * 12)

    assert len(_queued(app)) == 1
    assert run_jobs() == 1  # the profile (its picture's copy is kept by a job the same burst runs)
    row = identity_rows(app, account.id)[alice.igsid]
    assert (row.username, row.name, row.follower_count, row.is_user_follow_business) == (
        "alice", "Alice Liddell", 120, True)
    assert row.source == "profile" and row.last_fetched_at is not None and row.last_error is None
    with app.app_context():
        assert row.profile_pic_url and row.profile_pic_state == "stored"
        assert picture_url(row) == f"/accounts/{account.id}/media/pictures/{row.id}?v={row.profile_pic_key.rsplit('/', 1)[1][:8]}"
    assert len(sim.calls_to("profile")) == 1

    # Fresh now: the next messages enqueue nothing.
    _note_in_transactions(app, account.id, [alice.igsid] * 3)
    assert _queued(app) == []


def test_the_account_itself_is_never_fetched_nor_stored(app, sim, connected, run_jobs):
    account = connected.account
    _note_in_transactions(app, account.id, [account.ig_user_id, "", "  "])
    assert _queued(app) == []
    with app.app_context():
        row = db.session.get(Account, account.id)
        assert identities.fetch_profile(account.id, account.ig_user_id, force=True) == "skipped"
        for write in (lambda: identities.save_profile(row, row.ig_user_id, identities.Profile(username="shop")),
                      lambda: identities.save_participant(row, row.ig_user_id, "shop"),
                      lambda: identities.save_error(row, row.ig_user_id, ConsentRequired("no", code=230))):
            with pytest.raises(SelfIdentityError):
                write()
        db.session.rollback()
    assert sim.calls_to("profile") == []
    assert self_rows(app) == []


def test_a_rolled_back_event_decides_again(app, sim, connected):
    account, shop = connected.account, connected.ig
    bob = shop.add_customer("bob")
    with app.app_context():
        note_participant(account.id, bob.igsid)
        db.session.rollback()  # ingestion retries a conflicting event from the start
        assert _queued(app) == []
        note_participant(account.id, bob.igsid)
        db.session.commit()
    assert len(_queued(app)) == 1


@pytest.mark.parametrize("case, reason", [
    ("unavailable", "isn't available"),
    ("no_consent", "only after the person has written"),
    ("unknown_id", "does not know this id"),
])
def test_soft_errors_are_recorded_and_the_conversation_stays(app, sim, connected, factory, run_jobs, case,
                                                             reason):
    account, shop = connected.account, connected.ig
    if case == "unknown_id":
        igsid = "17849999999999999"
    else:
        customer = shop.add_customer("carol", name="Carol")
        if case == "unavailable":
            customer.sends_text("hi", deliver=False)
            customer.set(available=False)
        igsid = customer.igsid  # no_consent: she never wrote, so Instagram keeps her profile
    conversation_id = factory.conversation(account, igsid, messages=[{"mid": f"m-{case}", "text": "hi",
                                                                      "ts": 1_760_000_000_000}]).id

    _note_in_transactions(app, account.id, [igsid])
    run_jobs()

    row = identity_rows(app, account.id)[igsid]
    assert reason in row.last_error and row.last_error_code and row.last_error_at
    assert row.username is None and row.last_fetched_at is None
    assert failed_jobs(app) == []
    with app.app_context():
        assert db.session.get(Conversation, conversation_id) is not None
        assert db.session.get(Account, account.id).status == "active"
    # The failure is remembered: more messages do not hammer Instagram.
    _note_in_transactions(app, account.id, [igsid] * 3)
    assert _queued(app) == []


def test_a_failed_fetch_keeps_what_was_known(app, sim, connected, run_jobs):
    account, shop = connected.account, connected.ig
    dana = shop.add_customer("dana", name="Dana")
    dana.sends_text("hi", deliver=False)
    _note_in_transactions(app, account.id, [dana.igsid])
    run_jobs()
    dana.set(available=False)
    with app.app_context():
        assert identities.fetch_profile(account.id, dana.igsid, force=True).startswith("failed:")
    row = identity_rows(app, account.id)[dana.igsid]
    assert (row.username, row.name) == ("dana", "Dana") and "isn't available" in row.last_error


def test_a_dead_token_marks_the_account_and_the_inbox_says_so(app, sim, connected, run_jobs, client, auth,
                                                             factory):
    account, shop = connected.account, connected.ig
    erin = shop.add_customer("erin")
    erin.sends_text("hi", deliver=False)
    shop.revoke_token()

    _note_in_transactions(app, account.id, [erin.igsid])
    run_jobs()

    assert failed_jobs(app) == []
    assert identity_rows(app, account.id) == {}  # an account problem, not hers
    with app.app_context():
        row = db.session.get(Account, account.id)
        assert row.status == "reconnect_needed" and "190" in row.status_reason
    auth.login(factory.staff_on(account, "agent"))
    page = client.get(f"/accounts/{account.id}/").get_data(as_text=True)
    assert "Reconnect needed" in page
    # While the token is dead, first contact waits instead of failing again.
    _note_in_transactions(app, account.id, [erin.igsid])
    assert _queued(app) == []


def test_throttling_is_retried_by_the_job(app, sim, connected, run_jobs):
    account, shop = connected.account, connected.ig
    fay = shop.add_customer("fay")
    fay.sends_text("hi", deliver=False)
    sim.fail_next("profile", 4, times=10)  # longer than the client's own retries
    with app.app_context():
        from inbox.services.graph import RateLimited
        app.config["GRAPH_RETRY_BACKOFF_SECONDS"] = 0.01
        with pytest.raises(RateLimited):
            identities.fetch_profile(account.id, fay.igsid)
    assert identity_rows(app, account.id) == {}  # nothing half-written; RQ tries the job again later


# --- When a profile is due again ------------------------------------------------------------

def _pic(hours_left: float) -> str:
    expires = int((utcnow() + timedelta(hours=hours_left)).timestamp())
    return f"https://scontent.cdninstagram.com/v/t51.2885-19/1.jpg?oh=00_x&oe={expires:X}"


@pytest.mark.parametrize("row, due", [
    (None, True),
    (dict(fetched_h=-1), False),
    (dict(fetched_h=-24 * 8), True),  # older than the 7-day TTL
    (dict(fetched_h=-1, pic=_pic(2)), True),  # the picture expires within the margin
    (dict(fetched_h=-1, pic=_pic(48)), False),
    (dict(fetched_h=-1, pic=_pic(2), state="stored"), False),  # a stored copy does not expire
    (dict(failed_h=-0.1), False),  # a failure is retried after an hour, not at once
    (dict(failed_h=-2), True),
    (dict(fetched_h=-3, failed_h=-0.1), False),
    (dict(fetched_h=-0.1, failed_h=-3), False),  # fetched after the failure: fresh
])
def test_needs_fetch(app, row, due):
    now = utcnow()
    if row is not None:
        row = SimpleNamespace(
            last_fetched_at=now + timedelta(hours=row["fetched_h"]) if "fetched_h" in row else None,
            last_error_at=now + timedelta(hours=row["failed_h"]) if "failed_h" in row else None,
            profile_pic_url=row.get("pic"), profile_pic_state=row.get("state"))
    with app.app_context():
        assert needs_fetch(row, now) is due


def test_an_expired_or_foreign_picture_is_never_handed_out(app):
    with app.app_context():
        assert picture_url(SimpleNamespace(profile_pic_url=_pic(-1))) is None
        assert picture_url(SimpleNamespace(profile_pic_url=_pic(5))) == _pic(5)
        assert picture_url(SimpleNamespace(profile_pic_url=None)) is None
        assert picture_url(None) is None
        # Staff browsers load pictures from Instagram's media hosts only.
        for url in ("https://tracker.example/pixel.jpg", "javascript:alert(1)", "https://cdninstagram.com.evil.example/a",
                    "data:image/png;base64,AAAA"):
            assert picture_url(SimpleNamespace(profile_pic_url=url)) is None, url
    assert identities.profile_pic_expires_at("https://x.example/a.jpg?oe=zz") is None


def test_a_picture_about_to_expire_is_fetched_again_at_the_next_message(app, sim, connected, run_jobs):
    account, shop = connected.account, connected.ig
    gus = shop.add_customer("gus")
    gus.sends_text("hi", deliver=False)
    sim.settings.profile_pic_ttl = 3600  # Instagram's link dies within the hour
    _note_in_transactions(app, account.id, [gus.igsid])
    run_jobs()
    _raw_identity_update(app, account.id, gus.igsid, profile_pic_key=None, profile_pic_state="failed")  # no copy
    first = identity_rows(app, account.id)[gus.igsid].profile_pic_url
    sim.settings.profile_pic_ttl = 3 * 24 * 3600
    _note_in_transactions(app, account.id, [gus.igsid])
    run_jobs()
    second = identity_rows(app, account.id)[gus.igsid].profile_pic_url
    with app.app_context():
        assert second != first and picture_url(SimpleNamespace(profile_pic_url=second)) == second
    assert len(sim.calls_to("profile")) == 2


def test_a_kept_picture_outlives_its_link_and_is_not_fetched_again(app, sim, connected, run_jobs):
    account, shop = connected.account, connected.ig
    gus = shop.add_customer("gus")
    gus.sends_text("hi", deliver=False)
    sim.settings.profile_pic_ttl = 3600
    _note_in_transactions(app, account.id, [gus.igsid])
    run_jobs()
    row = identity_rows(app, account.id)[gus.igsid]
    assert row.profile_pic_state == "stored"  # the media pipeline kept a copy
    sim.advance(hours=2)  # Instagram's link is dead now
    _note_in_transactions(app, account.id, [gus.igsid])
    run_jobs()
    assert len(sim.calls_to("profile")) == 1
    with app.app_context():
        assert picture_url(identity_rows(app, account.id)[gus.igsid]).startswith(f"/accounts/{account.id}/media/")


def _raw_identity_update(app, account_id: int, igsid: str, **values) -> None:
    from sqlalchemy import update

    with app.app_context():
        db.session.execute(update(Identity).where(Identity.account_id == account_id, Identity.igsid == igsid)
                           .values(**values))
        db.session.commit()


# --- The doctor -------------------------------------------------------------------------------

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


def test_identity_rows_are_per_account(app, sim, connected, factory, run_jobs):
    from tests.support.sim import connect_account

    first, shop = connected.account, connected.ig
    second = connect_account(factory, sim, "secondshop")
    ivy = shop.add_customer("ivy")
    ivy.sends_text("hi", deliver=False)
    _note_in_transactions(app, first.id, [ivy.igsid])
    _note_in_transactions(app, second.account.id, [ivy.igsid])  # not hers on that account: Meta says 100/33
    run_jobs()
    assert identity_rows(app, first.id)[ivy.igsid].username == "ivy"
    assert identity_rows(app, second.account.id)[ivy.igsid].username is None
    with app.app_context():
        assert db.session.scalar(select(Identity.account_id).where(Identity.username == "ivy")) == first.id
