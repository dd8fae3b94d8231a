"""Our own server-side login sessions: a fresh random id at every login, idle and absolute timeouts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.db import utcnow
from convergences.security.models import LoginSession
from convergences.security.tokens import Signer, digest, random_token
from convergences.settings import SessionSettings

# Refresh last_seen at most once a minute: one write per request would be wasteful.
TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class NewSession:
    cookie_value: str
    row: LoginSession


class SessionManager:
    def __init__(self, settings: SessionSettings, secret_key: str) -> None:
        self.settings = settings
        self.signer = Signer(secret_key, "convergences.session")

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.settings.idle_minutes)

    @property
    def absolute(self) -> timedelta:
        return timedelta(hours=self.settings.absolute_hours)

    def create(self, db: AsyncSession, account_id: int, ip: str | None, user_agent: str | None,
               *, now: datetime | None = None) -> NewSession:
        now = now or utcnow()
        token = random_token()
        row = LoginSession(id=digest(token), account_id=account_id, created_at=now, last_seen_at=now,
                           authenticated_at=now, expires_at=now + self.absolute, ip=ip,
                           user_agent=(user_agent or "")[:300])
        db.add(row)
        return NewSession(cookie_value=str(self.signer.dumps(token)), row=row)

    async def load(self, db: AsyncSession, cookie_value: str | None,
                   *, now: datetime | None = None) -> LoginSession | None:
        """The live session for this cookie; an expired one is deleted and None returned."""
        if not cookie_value:
            return None
        token = self.signer.loads(cookie_value)
        if not isinstance(token, str):
            return None
        now = now or utcnow()
        row = await db.get(LoginSession, digest(token))
        if row is None:
            return None
        if now >= row.expires_at or now - row.last_seen_at >= self.idle:
            await db.delete(row)
            return None
        if now - row.last_seen_at >= TOUCH_INTERVAL:
            row.last_seen_at = now
        return row

    @staticmethod
    async def end(db: AsyncSession, session_id: str) -> None:
        await db.execute(delete(LoginSession).where(LoginSession.id == session_id))

    @staticmethod
    async def end_all(db: AsyncSession, account_id: int) -> int:
        """End every session of an account (suspension, deletion); return how many."""
        ids = (await db.scalars(select(LoginSession.id).where(LoginSession.account_id == account_id))).all()
        await db.execute(delete(LoginSession).where(LoginSession.account_id == account_id))
        return len(ids)
