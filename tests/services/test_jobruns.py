"""The JobRun lifecycle: one run per kind and account, progress, and a run that always ends."""

from __future__ import annotations

import json

import pytest

from inbox.extensions import db, get_redis
from inbox.jobs import get_queue
from inbox.live import frames
from inbox.live.publish import channel
from inbox.models import JobRun
from inbox.services import jobruns
from tests.support.live import drain
from tests.support.stored import job_run

KIND = "refresh_identities"
FUNC = "inbox.jobs.refresh_identities"


def test_a_second_start_returns_the_running_one(app, factory):
    account = factory.account()
    with app.app_context():
        first, created = jobruns.start_or_get_running(KIND, account.id, FUNC)
        again, created_again = jobruns.start_or_get_running(KIND, account.id, FUNC)
        other_kind, _ = jobruns.start_or_get_running("resync", account.id, "inbox.jobs.resync_account")
        assert created and not created_again and again.id == first.id
        assert other_kind.id != first.id
        assert first.state == "queued"
        # One RQ job per run, under the id the row names.
        assert get_queue("low").job_ids == [first.rq_job_id, other_kind.rq_job_id]


def test_progress_and_finish_are_recorded_and_pushed_live(app, factory):
    account = factory.account()
    app.config["JOB_PROGRESS_INTERVAL_SECONDS"] = 0
    with app.app_context():
        pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel(account.id))
        run, _ = jobruns.start_or_get_running(KIND, account.id, FUNC)
        run_id = run.id
        with jobruns.running(run_id) as handle:
            handle.progress(0, 3)
            handle.progress(2)
            assert job_run(app, run_id).progress_done == 2
            handle.finish({"refreshed": 3, "failed": 0, "total": 3, "errors": []})
        events = drain(pubsub)
    row = job_run(app, run_id)
    assert row.state == "finished" and row.summary["refreshed"] == 3 and row.finished_at and row.started_at
    assert (row.progress_done, row.progress_total) == (2, 3)
    assert {e["type"] for e in events} == {"job.progress"} and {e["job_run_id"] for e in events} == {run_id}
    assert len(events) >= 4  # queued, running, each progress, finished


def test_an_exception_ends_the_run_as_failed_with_the_reason(app, factory):
    account = factory.account()
    with app.app_context():
        run, _ = jobruns.start_or_get_running(KIND, account.id, FUNC, enqueue_job=False)
        run_id = run.id
        with pytest.raises(RuntimeError):
            with jobruns.running(run_id) as handle:
                handle.partial_summary = {"refreshed": 1}
                raise RuntimeError("the database went away")
    row = job_run(app, run_id)
    assert row.state == "failed" and row.error == "the database went away" and row.summary == {"refreshed": 1}


def test_a_return_without_a_result_still_ends_the_run(app, factory):
    account = factory.account()
    with app.app_context():
        run, _ = jobruns.start_or_get_running(KIND, account.id, FUNC, enqueue_job=False)
        run_id = run.id
        with jobruns.running(run_id):
            pass
        # A repeat of an ended run does nothing.
        with jobruns.running(run_id) as handle:
            assert handle is None
    row = job_run(app, run_id)
    assert row.state == "failed" and "without a result" in row.error


def test_a_run_whose_worker_died_is_ended_and_a_new_one_starts(app, factory):
    account = factory.account()
    app.config["JOB_HEARTBEAT_SECONDS"] = 0.05
    with app.app_context():
        run, _ = jobruns.start_or_get_running(KIND, account.id, FUNC)
        run_id = run.id
        # A worker took it, then died without unwinding (SIGKILL): running, no heartbeat.
        run.state = "running"
        db.session.commit()
        fresh, created = jobruns.start_or_get_running(KIND, account.id, FUNC)
        assert created and fresh.id != run_id
    dead = job_run(app, run_id)
    assert dead.state == "failed" and dead.error == jobruns.DIED


def test_a_queued_run_whose_job_vanished_is_ended(app, factory):
    account = factory.account()
    with app.app_context():
        run, _ = jobruns.start_or_get_running(KIND, account.id, FUNC)
        run_id = run.id
        get_queue("low").empty()  # Redis lost the queue
        from datetime import timedelta

        row = db.session.get(JobRun, run_id)
        row.created_at = row.created_at - timedelta(minutes=5)
        db.session.commit()
        assert jobruns.get_run(account.id, run_id).state == "failed"
        assert jobruns.get_run(account.id + 1000, run_id) is None  # never another account's


def test_the_status_route_stops_polling_once_finished(app, client, auth, factory):
    account = factory.account()
    auth.login(factory.staff_on(account, "agent"))
    with app.app_context():
        run, _ = jobruns.start_or_get_running(KIND, account.id, FUNC)
        run_id = run.id
    polling = client.get(f"/accounts/{account.id}/runs/{run_id}", headers={"HX-Request": "true"})
    assert polling.status_code == 200
    html = polling.get_data(as_text=True)
    assert 'hx-trigger="every 2s"' in html and f'id="run-{run_id}"' in html and "<html" not in html
    assert "HX-Request" in polling.headers["Vary"]

    with app.app_context():
        with jobruns.running(run_id) as handle:
            handle.finish({"refreshed": 2, "failed": 0, "total": 2, "errors": []})
    done = client.get(f"/accounts/{account.id}/runs/{run_id}", headers={"HX-Request": "true"})
    assert done.status_code == 286
    assert "every 2s" not in done.get_data(as_text=True) and "Refreshed <strong>2</strong> of 2" in done.get_data(as_text=True)
    assert json.loads(done.headers["HX-Trigger"]) == {"run-finished": {"id": run_id, "kind": KIND}}
    page = client.get(f"/accounts/{account.id}/runs/{run_id}")  # without htmx: a whole page, status 200
    assert page.status_code == 200 and "<html" in page.get_data(as_text=True)


def test_the_live_push_renders_the_run_for_swapping_by_id(app, factory):
    account = factory.account()
    with app.app_context():
        run, _ = jobruns.start_or_get_running(KIND, account.id, FUNC)
        run_id = run.id
        html = frames.render_frames(app, account.id, [{"type": "job.progress", "account_id": account.id,
                                                       "job_run_id": run_id}])
        assert f'id="run-{run_id}"' in html and 'hx-swap-oob="true"' in html
        assert frames.render_frames(app, account.id, [{"type": "job.progress", "account_id": account.id,
                                                       "job_run_id": run_id + 99}]) is None
