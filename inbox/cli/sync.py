"""`flask --app inbox sync`: resync an account from the Conversations API, from a terminal.

A run like the inbox's Resync button (one per account at a time; the UI shows it),
worked in this process unless --queue hands it to the worker.
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..services.sync import resync_account, start_resync
from .support import account_or_fail, run_here_or_queue


@click.command("sync")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--queue", is_flag=True, help="hand it to the worker instead of running it here")
@with_appcontext
def command(ig_user_id: str, queue: bool) -> None:
    """Resync the account from the Conversations API (adds what is missing; safe to repeat)."""
    account = account_or_fail(ig_user_id)
    run, created = start_resync(account.id, enqueue_job=queue)
    run_here_or_queue(run, created, queue, resync_account)
