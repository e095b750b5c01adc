"""`flask --app inbox identities …`: participants' cached profiles from a terminal.

`identities refresh` is a run like the button's (one per account at a time; the UI shows
it), worked in this process unless --queue hands it to the worker.
"""

from __future__ import annotations

from collections import Counter

import click
from flask.cli import with_appcontext

from ..display import display_name, name_hint
from ..services.identities import DOCTOR_RULES, doctor, people, refresh_identities, start_refresh
from .support import account_or_fail, run_here_or_queue


@click.group("identities", help="Participants' identities (the cached Instagram profiles).")
def group() -> None:
    pass


@group.command("refresh")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--queue", is_flag=True, help="hand it to the worker instead of running it here")
@with_appcontext
def identities_refresh(ig_user_id: str, queue: bool) -> None:
    """Refetch the profile of everyone the account talks to."""
    account = account_or_fail(ig_user_id)
    run, created = start_refresh(account.id, enqueue_job=queue)
    run_here_or_queue(run, created, queue, refresh_identities)


@group.command("list")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@with_appcontext
def identities_list(ig_user_id: str) -> None:
    """The account's customers as staff see them: the display name, or why only the id is known."""
    account = account_or_fail(ig_user_id)
    for person in people(account.id, limit=100_000):
        identity = person.identity
        note = name_hint(identity)
        if identity is not None and identity.last_error and (
                not identity.last_fetched_at or identity.last_error_at >= identity.last_fetched_at):
            note = f"{note} Last fetch failed: {identity.last_error}".strip()
        click.echo("\t".join(part for part in (person.igsid, display_name(identity, person.igsid), note) if part))


@group.command("doctor")
@click.option("--fix", is_flag=True, help="repair what is found")
@click.option("--account", "ig_user_id", default=None, help="only this account (IG_USER_ID)")
@with_appcontext
def identities_doctor(fix: bool, ig_user_id: str | None) -> None:
    """Report (and with --fix repair) identity rows that break the cache's rules."""
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
