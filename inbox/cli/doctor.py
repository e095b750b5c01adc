"""`inbox doctor`: check what an operator gets wrong; exit 0 only when everything passes."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..services.doctor import run_checks


@click.command("doctor")
@with_appcontext
def command() -> None:
    """Secrets, migrations, Redis, a worker, deliveries applied, PUBLIC_BASE_URL, media folder, each account."""
    checks = run_checks()
    for check in checks:
        click.echo(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
        if not check.ok and check.fix:
            click.echo(f"      fix: {check.fix}")
    failed = [c for c in checks if not c.ok]
    click.echo(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed.")
    if failed:
        raise SystemExit(1)
