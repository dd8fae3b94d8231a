"""Calendar arithmetic for the retention rules (months as the CNIL counts them, not 30-day blocks)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime


def months_before(when: datetime, months: int) -> datetime:
    """The same day and time ``months`` calendar months earlier (clamped to the month's last day)."""
    index = when.year * 12 + (when.month - 1) - months
    year, month = divmod(index, 12)
    day = min(when.day, calendar.monthrange(year, month + 1)[1])
    return when.replace(year=year, month=month + 1, day=day)


def months_after(when: datetime, months: int) -> datetime:
    return months_before(when, -months)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant (``2027-06-01T00:00:00Z``); a value without offset is taken as UTC.
    Raises ValueError."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
