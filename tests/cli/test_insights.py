"""`insights export` writes the page's CSVs; `insights rebuild` recomputes the facts."""

from __future__ import annotations

from datetime import datetime, timezone


def ms(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def test_export_writes_every_chart_for_the_period(runner, factory, account, second_account, tmp_path):
    ana = factory.staff_on(account, name="Ana")
    c = factory.conversation(account, messages=[{"text": "hi", "ts": ms(2026, 11, 2, 10)},
                                                {"text": "there?", "ts": ms(2026, 11, 2, 10, 1)}])
    factory.message(c, "yes", out=True, status="sent", sender_kind="staff", sent_by_user_id=ana.id,
                    ts=ms(2026, 11, 2, 10, 30))
    factory.conversation(second_account, messages=[{"text": "not ours", "ts": ms(2026, 11, 2, 10)}])
    r = runner.invoke(args=["insights", "export", "--account", account.ig_user_id, "--from", "2026-11-02",
                            "--to", "2026-11-03", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"insights-{n}-2026-11-02-2026-11-03.csv" for n in (
        "conversations", "first_response", "products", "top_posts", "top_ads", "heatmap", "people"))
    read = lambda n: (tmp_path / f"insights-{n}-2026-11-02-2026-11-03.csv").read_text().splitlines()  # noqa: E731
    assert read("conversations") == ["date,dm,post,ad,story,comment,total", "2026-11-02,1,0,0,0,0,1",
                                     "2026-11-03,0,0,0,0,0,0", "Total,1,0,0,0,0,1"]
    assert read("first_response")[1] == "2026-11-02,1,1800,1800"
    assert read("heatmap")[1] == "Monday,0,0,0,0,0,0,0,0,0,0,2,0,0,0,0,0,0,0,0,0,0,0,0,0"
    assert read("people") == ["person,replies_sent,answered_first,median_first_response_seconds,marked_done",
                            "Ana,1,1,1800,0"]


def test_export_refuses_bad_input(runner, account):
    r = runner.invoke(args=["insights", "export", "--account", "nope", "--from", "2026-11-02", "--to", "2026-11-03"])
    assert r.exit_code != 0 and "No account nope." in r.output
    r = runner.invoke(args=["insights", "export", "--account", account.ig_user_id, "--from", "2026-11-05",
                            "--to", "2026-11-03"])
    assert r.exit_code != 0 and "must end on or after its first day" in r.output


def test_rebuild(runner, factory, account):
    factory.conversation(account, messages=["hi"])
    r = runner.invoke(args=["insights", "rebuild", "--account", account.ig_user_id])
    assert r.exit_code == 0 and "Rebuilt the insights of @shop." in r.output
