"""Step-up: sensitive account changes need an authentication of less than STEP_UP_WINDOW."""

from __future__ import annotations

import urllib.parse
from datetime import datetime, timedelta

from convergences.db import utcnow
from convergences.security.models import LoginSession

STEP_UP_WINDOW = timedelta(minutes=10)


def is_recent(session: LoginSession, now: datetime | None = None) -> bool:
    """True when the session's authenticated_at is within STEP_UP_WINDOW of now."""
    return (now or utcnow()) - session.authenticated_at <= STEP_UP_WINDOW


def reauth_url(next_path: str) -> str:
    """'/compte/reauthentification?next=' + urllib.parse.quote(next_path, safe='')"""
    return "/compte/reauthentification?next=" + urllib.parse.quote(next_path, safe="")
