"""Failed-login throttling: a growing delay per account and per IP, never a permanent lockout.

After the free failures, each further failure doubles the wait (1 s, 2 s, 4 s … capped). A correct
password during a wait is refused with the same message, so an attacker learns nothing; once the
wait is over the real user logs in, and a success clears the account's counter.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.db import utcnow
from convergences.security.models import LoginThrottle
from convergences.settings import ThrottleSettings


def account_key(email: str) -> str:
    return "account:" + email.strip().lower()


def ip_key(ip: str | None) -> str:
    return "ip:" + (ip or "unknown")


class Throttle:
    def __init__(self, settings: ThrottleSettings) -> None:
        self.settings = settings

    async def wait_seconds(self, db: AsyncSession, keys: list[str], *, now: datetime | None = None) -> int:
        """Seconds left before another attempt is considered for any of these keys (0: go ahead)."""
        now = now or utcnow()
        wait = 0
        for key in keys:
            row = await db.get(LoginThrottle, key)
            if row is not None and row.blocked_until is not None and row.blocked_until > now:
                wait = max(wait, int((row.blocked_until - now).total_seconds()) + 1)
        return wait

    def _free(self, key: str) -> int:
        return self.settings.ip_free_failures if key.startswith("ip:") else self.settings.account_free_failures

    async def failure(self, db: AsyncSession, keys: list[str], *, now: datetime | None = None) -> None:
        now = now or utcnow()
        for key in keys:
            row = await db.get(LoginThrottle, key)
            if row is None:
                row = LoginThrottle(key=key, failures=0, last_failure_at=now)
                db.add(row)
            row.failures += 1
            row.last_failure_at = now
            over = row.failures - self._free(key)
            if over > 0:
                delay = min(2 ** (over - 1), self.settings.max_delay_seconds)
                row.blocked_until = now + timedelta(seconds=delay)

    async def success(self, db: AsyncSession, email: str) -> None:
        await db.execute(delete(LoginThrottle).where(LoginThrottle.key == account_key(email)))

    async def clear(self, db: AsyncSession, email: str) -> None:
        """Unlock an account (référent's action)."""
        await self.success(db, email)
