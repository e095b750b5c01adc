"""`flask --app inbox sync`: a resync from the terminal."""

from __future__ import annotations

from tests.services.test_sync import T0


def test_resync_from_the_command_line(app, runner, sim, connected):
    account, shop = connected.account, connected.ig
    shop.add_customer("fatima").sends_text("hi", at=T0, deliver=False)
    result = runner.invoke(args=["sync", "--account", account.ig_user_id])
    assert result.exit_code == 0, result.output
    assert "1 conversations (1 new), 1 messages (1 new), 1 usernames updated" in result.output
    again = runner.invoke(args=["sync", "--account", account.ig_user_id])
    assert "1 conversations (0 new), 1 messages (0 new), 0 usernames updated" in again.output
