"""Business hours and periods in an account's time zone (pure).

A schedule is {weekday: [(open_minute, close_minute), ...]} with weekday 0 = Monday and
minutes after local midnight (close may be 1440). Local times are turned into UTC through
the zone for each day, so a daylight-saving change moves the UTC hours with it; a local
time that does not exist that day (the hour skipped in spring) is read as zoneinfo's
fold=0 does.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")

Schedule = dict[int, list[tuple[int, int]]]


class HoursError(ValueError):
    """A time zone or schedule that cannot be used (the message says why)."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HoursError(f"Unknown time zone {name!r}.") from exc


@functools.cache
def zone_names() -> tuple[str, ...]:
    """The zones the settings form offers (read once: listing them reads the zone files)."""
    return tuple(sorted(n for n in available_timezones() if "/" in n and not n.startswith(("Etc/", "SystemV/")))) \
        + ("UTC",)


def schedule_from_json(value: dict | None) -> Schedule | None:
    """The stored form ({"0": [[540, 1020]]}) as a Schedule; None stays None (every hour counts)."""
    if value is None:
        return None
    return {int(day): [(int(a), int(b)) for a, b in spans] for day, spans in value.items()}


def schedule_to_json(schedule: Schedule | None) -> dict | None:
    if schedule is None:
        return None
    return {str(day): [[a, b] for a, b in spans] for day, spans in sorted(schedule.items())}


def parse_minute(text: str) -> int:
    """'09:30' → 570; '24:00' → 1440."""
    m = _HHMM.match(text or "")
    if not m or int(m.group(2)) > 59 or int(m.group(1)) > 24 or (int(m.group(1)) == 24 and int(m.group(2))):
        raise HoursError(f"{text!r} is not a time like 09:00.")
    return int(m.group(1)) * 60 + int(m.group(2))


def format_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_schedule(days: dict[int, tuple[str, str] | None]) -> Schedule:
    """One opening span per weekday from form fields ('09:00', '17:00'); None or blanks = closed."""
    out: Schedule = {}
    for day, span in days.items():
        if not span or not (span[0] or "").strip() and not (span[1] or "").strip():
            continue
        start, end = parse_minute(span[0]), parse_minute(span[1])
        if end <= start:
            raise HoursError(f"{WEEKDAYS[day]}: closing time must be after opening time.")
        out[day] = [(start, end)]
    if not out:
        raise HoursError("Open at least one day, or choose \"every hour counts\".")
    return out


def _local(day: date, minute: int, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz) + timedelta(minutes=minute) if minute >= 1440 else \
        datetime.combine(day, time(minute // 60, minute % 60), tzinfo=tz)


def open_spans(day: date, tz: ZoneInfo, schedule: Schedule) -> list[tuple[datetime, datetime]]:
    """The day's opening spans as aware UTC datetimes."""
    out = []
    for start, end in schedule.get(day.weekday(), ()):
        a = _local(day, start, tz).astimezone(timezone.utc)
        b = (datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz) if end >= 1440
             else _local(day, end, tz)).astimezone(timezone.utc)
        out.append((a, b))
    return out


def business_seconds(start: datetime, end: datetime, tz: ZoneInfo, schedule: Schedule | None) -> int:
    """Seconds from start to end that fall in business hours (all of them without a schedule)."""
    if end <= start:
        return 0
    if schedule is None:
        return int((end - start).total_seconds())
    total = 0.0
    day = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date()
    while day <= last:
        for a, b in open_spans(day, tz, schedule):
            lo, hi = max(a, start), min(b, end)
            if hi > lo:
                total += (hi - lo).total_seconds()
        day += timedelta(days=1)
    return int(total)


@dataclass(frozen=True)
class Period:
    """Local dates first..last (inclusive) in a zone, with their UTC bounds in ms."""

    first: date
    last: date
    tz_name: str

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.tz_name)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    @property
    def start_ms(self) -> int:
        return day_start_ms(self.first, self.tz)

    @property
    def end_ms(self) -> int:
        return day_start_ms(self.last + timedelta(days=1), self.tz)

    def previous(self) -> Period:
        length = (self.last - self.first).days + 1
        return Period(self.first - timedelta(days=length), self.first - timedelta(days=1), self.tz_name)

    def local_day(self, ms: int) -> date:
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone(self.tz).date()


def day_start_ms(day: date, tz: ZoneInfo) -> int:
    return int(datetime.combine(day, time(0), tzinfo=tz).timestamp() * 1000)
