"""`flask --app inbox comments list` and `automations list|add|pause`."""

from __future__ import annotations

import time

from tests.support.webhooks import ACCOUNT, MEDIA, SECOND_ACCOUNT, changes, comment, post


def test_comments_list_prints_one_line_per_comment_with_its_posts_product(runner, client, account, second_account,
                                                                          factory):
    factory.link(factory.post(account, MEDIA, caption="Red dress"), factory.product(account, "Red Dress", "RD-1"))
    now = int(time.time())
    post(client, changes(comment("1791", "price?"), time_s=now - 5))
    post(client, changes(comment("1792", "other post", media="18000000000000002"), time_s=now))
    post(client, changes(comment("1793", "second shop's"), account=SECOND_ACCOUNT))
    out = runner.invoke(args=["comments", "list", "--account", ACCOUNT]).output.splitlines()
    assert len(out) == 2 and "1792" in out[0] and "product: -" in out[0]
    assert "1791" in out[1] and "product: Red Dress (RD-1)" in out[1] and "@anna.b: price?" in out[1]
    only = runner.invoke(args=["comments", "list", "--account", ACCOUNT, "--post", MEDIA]).output.splitlines()
    assert len(only) == 1 and "1791" in only[0]
    assert "second shop" not in "\n".join(out)
    assert runner.invoke(args=["comments", "list", "--account", "nope"]).exit_code != 0


def test_automations_add_list_pause_and_dry_run(runner, client, account):
    post(client, changes(comment("1791", "Précio?"), time_s=int(time.time())))
    args = ["automations", "add", "--account", ACCOUNT, "--name", "Price", "--keywords", "precio, 💰",
            "--reply", "Hi {first_name}! {product}", "--public-reply", "Check your DMs"]
    dry = runner.invoke(args=[*args, "--dry-run"])
    assert dry.exit_code == 0 and "1 comment(s)" in dry.output and "Précio?" in dry.output
    assert "No automations" in runner.invoke(args=["automations", "list", "--account", ACCOUNT]).output
    added = runner.invoke(args=args)
    assert added.exit_code == 0 and "(active)" in added.output
    again = runner.invoke(args=args)
    assert again.exit_code != 0 and "already a rule named" in again.output
    bad = runner.invoke(args=["automations", "add", "--account", ACCOUNT, "--name", "X", "--keywords", "a",
                              "--reply", "{oops}"])
    assert bad.exit_code != 0 and "Unknown variable {oops}" in bad.output
    listed = runner.invoke(args=["automations", "list", "--account", ACCOUNT]).output
    assert "active  Price  keywords: precio, 💰  all posts  fired 0x" in listed
    assert "paused" in runner.invoke(args=["automations", "pause", "Price", "--account", ACCOUNT]).output
    assert "paused  Price" in runner.invoke(args=["automations", "list", "--account", ACCOUNT]).output
    assert "active" in runner.invoke(args=["automations", "pause", "Price", "--resume", "--account", ACCOUNT]).output
