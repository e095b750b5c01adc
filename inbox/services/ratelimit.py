"""Rate limits shared by every process through Redis: callers wait for a slot, never fail.

Each call reserves the next free slot of its bucket atomically (GCRA, with Redis' own
clock, so every process agrees on the time) and sleeps until that slot. N processes
asking at once therefore get N distinct slots spaced 1/rate apart, which is what Meta's
per-account per-second limits need (Conversations API 2/s, sends 100/s, audio and video
sends 10/s: https://developers.facebook.com/documentation/instagram-platform/overview).
"""

from __future__ import annotations

import time

from .. import metrics
from ..extensions import get_redis, rkey

# KEYS[1]: the bucket. ARGV: emission interval (µs), burst tolerance (µs), and the longest
# wait (µs) worth reserving (-1: any). Returns the µs to wait before the reserved slot, or,
# when that would be longer than the longest wait, minus the µs (nothing is reserved).
_RESERVE = """
pcall(redis.replicate_commands)
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local longest = tonumber(ARGV[3])
if longest >= 0 and wait > longest then return -wait end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1000)
return wait
"""


class BudgetSpent(Exception):
    """No slot within the longest wait the caller accepts; `retry_after` seconds until there is one."""

    def __init__(self, retry_after: float):
        super().__init__(f"no slot for {retry_after:.0f}s")
        self.retry_after = retry_after


def acquire(bucket: str, key: str, rate: float | None, *, burst: int = 1, app=None, sleep=time.sleep,
            max_wait: float | None = None) -> float:
    """Wait for a slot in bucket/key at `rate` calls per second; returns the seconds waited.

    A rate of None or 0 means no limit. `burst` lets that many calls go at once after a
    quiet period; the default of 1 spaces every call, which keeps clear of the server's
    own limit even when network delays bunch requests together. With `max_wait`, a slot
    further away than that is not taken: BudgetSpent says when one will be free (an
    hourly budget, such as private replies, is waited for by rescheduling the job).
    """
    if not rate:
        return 0.0
    interval_us = int(1_000_000 / rate)
    tolerance_us = interval_us * (max(burst, 1) - 1)
    longest_us = int(max_wait * 1_000_000) if max_wait is not None else -1
    client = get_redis(app)
    wait_us = int(client.eval(_RESERVE, 1, rkey("ratelimit", bucket, key, app=app), interval_us, tolerance_us,
                              longest_us))
    if wait_us < 0:
        raise BudgetSpent(-wait_us / 1_000_000)
    wait = wait_us / 1_000_000
    metrics.ratelimit_wait(bucket, wait)
    if wait > 0:
        sleep(wait)
    return wait
