"""Leases for durable outboxes (mail, back-channel logouts): a row is claimed by one deliverer at a time.

A due row (``next_attempt_at`` NULL or past) is claimed with one conditional UPDATE that pushes
``next_attempt_at`` to the end of the lease (and stamps a lease token where the table has one): two
processes racing for the same row see one UPDATE succeed, the other match no row. A deliverer that dies
mid-way loses its lease when it expires, and the row is due again: nothing is lost.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convergences.db import transaction, utcnow

LEASE = timedelta(seconds=60)


def backoff(attempts: int, *, cap_seconds: int = 3600) -> timedelta:
    """Wait before the next attempt after ``attempts`` failures: 2, 4, 8 s … capped."""
    return timedelta(seconds=min(2 ** max(attempts, 1), cap_seconds))


def _due(model: Any, now: datetime) -> Any:
    return or_(model.next_attempt_at.is_(None), model.next_attempt_at <= now)


async def claim_due(maker: async_sessionmaker[AsyncSession], model: Any, done: Any, *, max_attempts: int,
                    limit: int = 100, lease: timedelta = LEASE) -> list[tuple[int, str]]:
    """Lease up to ``limit`` due rows not yet ``done``; return (id, lease token) of those this caller won."""
    now = utcnow()
    async with transaction(maker) as db:
        ids = (await db.scalars(select(model.id).where(done.is_(None), model.attempts < max_attempts,
                                                        _due(model, now)).order_by(model.id).limit(limit))).all()
    won: list[tuple[int, str]] = []
    for row_id in ids:
        token = secrets.token_urlsafe(16)
        values: dict[str, Any] = {"next_attempt_at": now + lease}
        if hasattr(model, "lease_token"):
            values["lease_token"] = token
        async with transaction(maker) as db:
            claimed = (await db.execute(update(model).where(model.id == row_id, done.is_(None), _due(model, now))
                                        .values(**values))).rowcount == 1  # type: ignore[attr-defined]
        if claimed:
            won.append((row_id, token))
    return won
