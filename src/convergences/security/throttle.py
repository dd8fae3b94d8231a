"""Failed-login throttling: growing delays that can never be turned into a lockout of the real user.

Three counters, each with its own free failures, then a delay doubling at each further failure
(1 s, 2 s, 4 s … capped):

* ``pair:<email>|<ip>`` — one account from one address: guessing from one place slows down quickly,
  and only that place;
* ``ip:<ip>`` — one address across accounts (credential stuffing);
* ``account:<email>`` — one account from everywhere (a distributed attack). It slows down only
  browsers that never logged in to that account: a browser holding the account's signed *known device*
  cookie (set at each successful login) is exempt, so a flood of failures from other addresses never
  stops the owner from logging in from their own computer.

A correct password during a delay is refused with the same message, so an attacker learns nothing.
The ``account`` counter also triggers, once per burst, a warning mail to the owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.db import utcnow
from convergences.security.models import LoginThrottle
from convergences.security.tokens import Signer, digest
from convergences.settings import ThrottleSettings

# A new burst (and a new warning) once the account has seen no failure for this long.
BURST_GAP = timedelta(hours=1)
DEVICE_COOKIE = "cvg_device"
DEVICE_DAYS = 180


def account_key(email: str) -> str:
    return "account:" + email.strip().lower()


def pair_key(email: str, ip: str | None) -> str:
    return f"pair:{email.strip().lower()}|{ip or 'unknown'}"


def ip_key(ip: str | None) -> str:
    return "ip:" + (ip or "unknown")


@dataclass(frozen=True)
class LoginKeys:
    """The counters a login attempt is checked against, and those a failure increments."""

    checked: list[str]
    counted: list[str]


def login_keys(email: str, ip: str | None, *, known_device: bool) -> LoginKeys:
    counted = [pair_key(email, ip), ip_key(ip), account_key(email)]
    return LoginKeys(checked=counted[:2] if known_device else counted, counted=counted)


class DeviceCookie:
    """The signed *known device* cookie: which accounts logged in from this browser (email digests)."""

    def __init__(self, secret_key: str) -> None:
        self.signer = Signer(secret_key, "convergences.device")

    def knows(self, cookie: str | None, email: str) -> bool:
        value = self.signer.loads(cookie, max_age=DEVICE_DAYS * 86400) if cookie else None
        return isinstance(value, list) and digest(email.strip().lower()) in value

    def add(self, cookie: str | None, email: str) -> str:
        value = self.signer.loads(cookie, max_age=DEVICE_DAYS * 86400) if cookie else None
        known = [v for v in value if isinstance(v, str)][-9:] if isinstance(value, list) else []
        mine = digest(email.strip().lower())
        return self.signer.dumps([v for v in known if v != mine] + [mine])


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
        if key.startswith("ip:"):
            return self.settings.ip_free_failures
        if key.startswith("account:"):
            return self.settings.account_global_free_failures
        return self.settings.account_free_failures

    async def failure(self, db: AsyncSession, keys: list[str], *, now: datetime | None = None) -> bool:
        """Count a failure on each key; True when the account's owner should now be warned (once per burst)."""
        now = now or utcnow()
        alert = False
        for key in keys:
            row = await db.get(LoginThrottle, key)
            if row is None:
                row = LoginThrottle(key=key, failures=0, last_failure_at=now)
                db.add(row)
            elif key.startswith("account:") and now - row.last_failure_at > BURST_GAP:
                row.failures, row.blocked_until, row.alerted_at = 0, None, None  # a new burst
            row.failures += 1
            row.last_failure_at = now
            over = row.failures - self._free(key)
            if over > 0:
                delay = min(2 ** min(over - 1, 30), self.settings.max_delay_seconds)
                row.blocked_until = now + timedelta(seconds=delay)
            if (key.startswith("account:") and row.alerted_at is None
                    and row.failures >= self.settings.alert_after_failures):
                row.alerted_at = now
                alert = True
        return alert

    async def success(self, db: AsyncSession, email: str, ip: str | None = None) -> None:
        """The owner proved the password: forget the account's counters (this address's and the global one)."""
        await db.execute(delete(LoginThrottle).where(LoginThrottle.key.in_([account_key(email),
                                                                            pair_key(email, ip)])))

    async def clear(self, db: AsyncSession, email: str) -> int:
        """Unlock an account from every address (référent's action); return how many counters were removed."""
        result = await db.execute(delete(LoginThrottle).where(or_(
            LoginThrottle.key == account_key(email),
            LoginThrottle.key.startswith(f"pair:{email.strip().lower()}|", autoescape=True))))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
