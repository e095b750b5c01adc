"""The worker's periodic work: the daily check and the recovery every few minutes.

Each run first schedules the next one (`inbox.queue`), so a failure now never ends the
chain; the worker schedules both again whenever it starts.
"""

from __future__ import annotations

from .. import queue
from . import accounts_maintenance, deliveries, erasure, media, sending


def run_daily_check() -> None:
    """Refresh tokens near expiry and restore webhook subscriptions (every account), delete
    messages past each account's retention, then stored media no row refers to any more."""
    queue.schedule_daily_check()
    try:
        accounts_maintenance.refresh_tokens()
        erasure.apply_retention()
    finally:
        media.sweep()


def run_recovery() -> None:
    """Replay webhook deliveries an outage or a crash interrupted, then fail the sends whose
    echo never came or whose send job died mid-call."""
    queue.schedule_recovery()
    deliveries.recover_deliveries()
    sending.sweep_unconfirmed()
    for erasure_id in erasure.pending_account_erasures():  # Meta's data-deletion requests not done yet
        erasure.erase_account(erasure_id)
