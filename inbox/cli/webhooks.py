"""`flask --app inbox webhooks ingest|replay`: apply payload files, re-apply stored deliveries."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import with_appcontext

from ..services.deliveries import StorageUnavailable, receive_delivery, replay_delivery, replayable_ids


@click.group("webhooks", help="Webhook deliveries: import payload files, replay stored deliveries.")
def group() -> None:
    pass


@group.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--create-accounts", is_flag=True, help="create accounts we do not have from entry.id")
@with_appcontext
def ingest_command(files: tuple[str, ...], create_accounts: bool) -> None:
    """Apply payload files as if Meta had delivered them; print one JSON line per event.

    Each line has exactly: type, account, conversation_id, customer_igsid, mid, direction,
    sender_kind, action (created, duplicate, confirmed, claimed, updated, deleted, ignored)
    and reason. The exit status is 1 when a file could not be applied completely (or is not JSON).
    """
    failed = False
    for name in files:
        try:
            body = sys.stdin.buffer.read() if name == "-" else open(name, "rb").read()
        except OSError as exc:
            raise click.ClickException(f"{name}: {exc.strerror or exc}") from exc
        try:
            result = receive_delivery(body, None, origin="cli", create_accounts=create_accounts)
        except StorageUnavailable as exc:
            raise click.ClickException(f"{name}: the database is unavailable ({exc})") from exc
        for outcome in result.outcomes:
            click.echo(json.dumps(outcome.line(), ensure_ascii=False))
        unreadable = len(result.outcomes) == 1 and result.outcomes[0].type == "invalid"
        failed |= result.status == "failed" or unreadable
    if failed:
        raise SystemExit(1)


@group.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option("--failed", "failed", is_flag=True, help="every failed or interrupted delivery")
@with_appcontext
def replay_command(ids: tuple[int, ...], failed: bool) -> None:
    """Apply stored deliveries again (idempotent: an applied delivery changes nothing)."""
    if bool(ids) == failed:
        raise click.UsageError("Give delivery ids or --failed (not both).")
    targets = list(ids) if ids else replayable_ids()
    if not targets:
        click.echo("Nothing to replay.")
        return
    still_failing = 0
    for delivery_id in targets:
        try:
            result = replay_delivery(delivery_id)
        except StorageUnavailable as exc:
            raise click.ClickException(f"the database is unavailable ({exc})") from exc
        if result is None:
            click.echo(f"Delivery {delivery_id}: not found", err=True)
            still_failing += 1
            continue
        counts: dict[str, int] = {}
        for outcome in result.outcomes:
            key = "failed" if outcome.error else outcome.action
            counts[key] = counts.get(key, 0) + 1
        summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "no events"
        line = f"Delivery {delivery_id}: {result.status} ({summary})"
        if result.error:
            line += f": {result.error}"
        click.echo(line)
        still_failing += result.status == "failed"
    if still_failing:
        raise SystemExit(1)
