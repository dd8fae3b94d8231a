"""Step-up: sensitive changes (email, password, factors, référents) need a recent authentication."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import quote

from convergences.db import utcnow
from convergences.security.models import LoginSession

STEP_UP_WINDOW = timedelta(minutes=10)
REAUTH_PATH = "/compte/reauthentification"


def is_recent(session: LoginSession, now: datetime | None = None) -> bool:
    """True when the session's authenticated_at is within STEP_UP_WINDOW of now."""
    return (now or utcnow()) - session.authenticated_at <= STEP_UP_WINDOW


def reauth_url(next_path: str) -> str:
    """'/compte/reauthentification?next=' + quoted next_path"""
    return REAUTH_PATH + "?next=" + quote(next_path, safe="")
