"""What the command-line groups share."""

from __future__ import annotations

import click


def account_or_fail(ig_user_id: str):
    """The account with this Instagram id, or a clear command-line error."""
    from .services.accounts import find_account

    account = find_account(ig_user_id)
    if account is None:
        raise click.ClickException(f"No account {ig_user_id}.")
    return account
