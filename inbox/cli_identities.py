"""`flask --app inbox identities …` and `flask --app inbox sync`: identities and resync from a terminal.

Both runs are JobRuns like the buttons' (one per account at a time; the UI shows them),
but run in this process unless --queue hands them to the worker.
"""

from __future__ import annotations

from collections import Counter

import click
from flask import Flask
from flask.cli import with_appcontext

from .cli_support import account_or_fail
from .extensions import db


def init_app(app: Flask) -> None:
    app.cli.add_command(identities)
    app.cli.add_command(sync_command)


def _report(run) -> None:
    """Print a finished run's summary; exit 1 when it failed."""
    from .display import display_name

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


def _run(run, created: bool, queue: bool, service) -> None:
    from .models import JobRun

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


# --- identities ----------------------------------------------------------------------

@click.group(help="Participants' identities (the cached Instagram profiles).")
def identities() -> None:
    pass


@identities.command("refresh")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--queue", is_flag=True, help="hand it to the worker instead of running it here")
@with_appcontext
def identities_refresh(ig_user_id: str, queue: bool) -> None:
    """Refetch the profile of everyone the account talks to."""
    from .services.identities import refresh_identities, start_refresh

    account = account_or_fail(ig_user_id)
    run, created = start_refresh(account.id, enqueue_job=queue)
    _run(run, created, queue, refresh_identities)


@identities.command("list")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@with_appcontext
def identities_list(ig_user_id: str) -> None:
    """The account's customers as staff see them: the display name, or why only the id is known."""
    from .display import display_name, name_hint
    from .services.identities import people

    account = account_or_fail(ig_user_id)
    for person in people(account.id, limit=100_000):
        identity = person.identity
        note = name_hint(identity)
        if identity is not None and identity.last_error and (
                not identity.last_fetched_at or identity.last_error_at >= identity.last_fetched_at):
            note = f"{note} Last fetch failed: {identity.last_error}".strip()
        click.echo("\t".join(part for part in (person.igsid, display_name(identity, person.igsid), note) if part))


@identities.command("doctor")
@click.option("--fix", is_flag=True, help="repair what is found")
@click.option("--account", "ig_user_id", default=None, help="only this account (IG_USER_ID)")
@with_appcontext
def identities_doctor(fix: bool, ig_user_id: str | None) -> None:
    """Report (and with --fix repair) identity rows that break the cache's rules."""
    from .services.identities import DOCTOR_RULES, doctor

    account_id = account_or_fail(ig_user_id).id if ig_user_id else None
    findings = doctor(fix=fix, account_id=account_id)
    for finding in findings:
        click.echo(finding.line())
    if not findings:
        click.echo("All identity rows follow the rules.")
        return
    counts = Counter(f.rule for f in findings)
    for rule, count in sorted(counts.items()):
        click.echo(f"{count} row(s) {DOCTOR_RULES[rule]}.")
    if fix:
        click.echo(f"Repaired {sum(f.fixed for f in findings)} problem(s).")
    else:
        raise click.ClickException(f"{len(findings)} problem(s) found; run with --fix to repair them.")


# --- sync --------------------------------------------------------------------------------

@click.command("sync")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--queue", is_flag=True, help="hand it to the worker instead of running it here")
@with_appcontext
def sync_command(ig_user_id: str, queue: bool) -> None:
    """Resync the account from the Conversations API (adds what is missing; safe to repeat)."""
    from .services.sync import resync_account, start_resync

    account = account_or_fail(ig_user_id)
    run, created = start_resync(account.id, enqueue_job=queue)
    _run(run, created, queue, resync_account)
