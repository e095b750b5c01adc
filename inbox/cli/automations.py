"""`flask --app inbox automations list|add|pause`: an account's keyword rules for comments."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..services import automations
from ..services.automations import AutomationError, AutomationNotFound
from .support import account_or_fail


@click.group("automations", help="Keyword rules that answer comments with a private reply.")
def group() -> None:
    pass


@group.command("list")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--history", is_flag=True, help="also each rule's latest firings")
@with_appcontext
def automations_list(ig_user_id: str, history: bool) -> None:
    """Every rule: id, state, name, keywords, posts, and how often it fired."""
    account = account_or_fail(ig_user_id)
    rules = automations.list_automations(account.id)
    if not rules:
        click.echo(f"No automations on {account.label}.")
        return
    for rule in rules:
        runs = automations.history(account.id, rule.id, limit=1000)
        fired = sum(1 for item in runs if item.run.outcome == "fired")
        posts = "all posts" if rule.all_posts else "posts " + ",".join(rule.media_ids or [])
        click.echo(f"{rule.id}  {'active' if rule.active else 'paused'}  {rule.name}  "
                   f"keywords: {', '.join(automations.keywords_of(rule))}  {posts}  fired {fired}x")
        if history:
            for item in runs[:10]:
                who = f"@{item.comment.author_username}" if item.comment.author_username else "someone"
                click.echo(f"    {item.run.created_at:%Y-%m-%d %H:%M}  {item.run.outcome:<7} {who}: "
                           f"{' '.join((item.comment.text or '').split())[:60]}  ({item.run.reason})")


@group.command("add")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--name", required=True)
@click.option("--keywords", required=True, help="comma-separated words, phrases or emoji")
@click.option("--reply", "template", required=True,
              help="the private reply; variables {first_name} {username} {product} {price} {agent} {post} {link}")
@click.option("--public-reply", "public_replies", multiple=True, help="a public reply variation (repeatable)")
@click.option("--post", "media_ids", multiple=True, help="only comments on this post (media id; repeatable)")
@click.option("--dry-run", is_flag=True, help="list recent comments it would have matched; save nothing")
@with_appcontext
def automations_add(ig_user_id: str, name: str, keywords: str, template: str, public_replies: tuple[str, ...],
                    media_ids: tuple[str, ...], dry_run: bool) -> None:
    """Add a rule (active at once), or with --dry-run show what it would have matched."""
    account = account_or_fail(ig_user_id)
    try:
        spec = automations.check_rule(account.id, name=name, keywords=keywords, template=template,
                                      public_replies=list(public_replies), media_ids=list(media_ids) or None)
        if dry_run:
            matches = automations.dry_run(account.id, spec.keywords, spec.media_ids)
            click.echo(f"{len(matches)} comment(s) of the last {automations.DRY_RUN_DAYS} days would have matched "
                       f"(nothing saved, nothing sent):")
            for comment, keyword in matches:
                who = f"@{comment.author_username}" if comment.author_username else "someone"
                click.echo(f"  {comment.comment_id}  {who}: {' '.join((comment.text or '').split())}  "
                           f"(matched {keyword!r})")
            return
        rule = automations.create_automation(account.id, spec)
    except AutomationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Added rule {rule.id} {rule.name!r} (active): keywords {', '.join(spec.keywords)}.")


@group.command("pause")
@click.argument("rule")
@click.option("--account", "ig_user_id", required=True, help="the account's IG_USER_ID")
@click.option("--resume", is_flag=True, help="turn it back on instead")
@with_appcontext
def automations_pause(rule: str, ig_user_id: str, resume: bool) -> None:
    """Pause a rule (by id or name), or resume it with --resume."""
    account = account_or_fail(ig_user_id)
    try:
        found = automations.find_automation(account.id, rule)
    except AutomationNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    automations.set_active(account.id, found.id, resume)
    click.echo(f"Rule {found.id} {found.name!r} is {'active' if resume else 'paused'}.")
