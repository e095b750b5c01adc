"""What the command groups share: finding an account, and running a run here or in the worker."""

from __future__ import annotations

from collections.abc import Callable

import click

from ..display import display_name
from ..extensions import db
from ..models import Account, JobRun
from ..services.accounts import find_account


def account_or_fail(ig_user_id: str) -> Account:
    """The account with this Instagram id, or a clear command-line error."""
    account = find_account(ig_user_id)
    if account is None:
        raise click.ClickException(f"No account {ig_user_id}.")
    return account


def run_here_or_queue(run: JobRun, created: bool, queue: bool, service: Callable[[int], None]) -> None:
    """Work a run started from the terminal in this process (or leave it to the worker with --queue)."""
    if not created:
        click.echo(f"Run {run.id} is already going ({run.progress_done}"
                   f"{'/' + str(run.progress_total) if run.progress_total else ''}); not starting another.")
        return
    if queue:
        click.echo(f"Queued run {run.id}; the worker runs it and the inbox shows its progress.")
        return
    click.echo(f"Run {run.id} started.")
    service(run.id)
    db.session.expire_all()
    _report(db.session.get(JobRun, run.id))


def _report(run: JobRun) -> None:
    """Print a finished run's summary; exit 1 when it failed."""
    summary = run.summary or {}
    if run.kind == "refresh_identities":
        click.echo(f"Refreshed {summary.get('refreshed', 0)} of {summary.get('total', 0)}, "
                   f"{summary.get('failed', 0)} failed.")
    else:
        click.echo(f"{summary.get('conversations', 0)} conversations ({summary.get('created_conversations', 0)} new), "
                   f"{summary.get('messages', 0)} messages ({summary.get('created_messages', 0)} new), "
                   f"{summary.get('identities', 0)} usernames updated, {summary.get('skipped', 0)} skipped, "
                   f"{summary.get('failed', 0)} failed, {summary.get('calls', 0)} Graph API calls.")
    for error in summary.get("errors") or []:
        who = error.get("name") or error.get("conversation") or display_name(None, error.get("igsid"))
        igsid = f" ({error['igsid']})" if error.get("igsid") else ""
        click.echo(f"  {who}{igsid}: {error.get('error')}")
    if run.state != "finished":
        raise click.ClickException(run.error or f"The run ended as {run.state}.")
