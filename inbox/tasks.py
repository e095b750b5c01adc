"""RQ entry points: each takes ids and calls one service. RQ imports this module, nothing else does.

Services enqueue these by name through `inbox.queue.enqueue("inbox.tasks.<name>", ...)`;
the worker runs them inside the app context.
"""

from __future__ import annotations

from .services import (accounts_maintenance, assignees, automations, comments, connect, erasure, identities, media,
                       periodic, sending, sync)
from .services.insights import facts as insight_facts
from .services.products import assignment, posts


def build_insights(account_id: int) -> None:
    """A large account's first full build of its Insights facts."""
    insight_facts.refresh(account_id)


def send_message(message_id: int) -> None:
    """Send one pending outgoing message through the Send API."""
    sending.send_message(message_id)


def send_public_reply(comment_id: int) -> None:
    """Post our pending public reply to a comment through the Comments API."""
    comments.send_public_reply(comment_id)


def run_comment_action(comment_id: int) -> None:
    """Hide, show again or delete a comment through the Comments API."""
    comments.run_comment_action(comment_id)


def run_comment_automations(comment_id: int) -> None:
    """Run the account's keyword rules on a new customer comment."""
    automations.run_for_comment(comment_id)


def expire_unconfirmed_send(message_id: int) -> None:
    """Fail a send whose echo never came (it may not have reached the customer)."""
    sending.expire_unconfirmed(message_id)


def fetch_profile(account_id: int, igsid: str) -> None:
    """Fetch (or refresh) one participant's profile."""
    identities.fetch_profile(account_id, igsid)


def download_media(attachment_id: int) -> None:
    """Keep a copy of one attachment's media before Instagram's URL expires."""
    media.download_attachment(attachment_id)


def keep_profile_picture(account_id: int, igsid: str) -> None:
    """Keep a copy of a participant's profile picture before its link expires."""
    media.keep_profile_picture(account_id, igsid)


def assign_from_message(message_id: int) -> None:
    """Apply the product evidence one message carries (links, auto-link, assignment)."""
    assignment.assign_from_message(message_id)


def load_own_media(job_run_id: int) -> None:
    """Load the account's own posts through the Graph API for the posts page (a run)."""
    posts.load_own_media(job_run_id)


def refresh_identities(job_run_id: int) -> None:
    """Refetch every participant of an account (a run with progress)."""
    identities.refresh_identities(job_run_id)


def resync_account(job_run_id: int) -> None:
    """Page through the Conversations API and merge what it returns (a run)."""
    sync.resync_account(job_run_id)


def connect_account(job_run_id: int) -> None:
    """Finish connecting an Instagram account after Business Login (a run)."""
    connect.run_connect(job_run_id)


def check_account(account_id: int) -> None:
    """The daily check for one account, now ("Check now", or a token found dead)."""
    accounts_maintenance.check_account(account_id)


def erase_account(erasure_id: int) -> None:
    """Delete an account and everything of it (Meta's data-deletion request)."""
    erasure.erase_account(erasure_id)


def daily_check() -> None:
    """Once a day: tokens near expiry, webhook subscriptions, stored files nothing refers to."""
    periodic.run_daily_check()


def recovery() -> None:
    """Every few minutes: interrupted webhook deliveries, sends whose echo never came."""
    periodic.run_recovery()


def auto_assign(conversation_id: int) -> None:
    """A new conversation goes to the next online agent (accounts with round-robin on)."""
    assignees.auto_assign(conversation_id)
