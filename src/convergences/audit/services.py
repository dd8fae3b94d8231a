"""Writing and reading the journal. Writes happen in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.audit.actions import Action
from convergences.audit.models import AuditEvent
from convergences.authz import Actor

PAGE_SIZE = 50


def record(db: AsyncSession, actor: Actor | None, action: Action, *, employer_id: int | None = None,
           target_type: str = "", target_id: int | None = None, target_label: str = "",
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
           ip: str | None = None) -> AuditEvent:
    """Add one journal entry to the current transaction (it commits or rolls back with the change)."""
    event = AuditEvent(
        actor_id=actor.account_id if actor else None,
        actor_label=actor.label if actor else "système",
        employer_id=employer_id, action=action.value, target_type=target_type, target_id=target_id,
        target_label=target_label[:300], before=before, after=after,
        ip=(actor.ip if actor else None) or ip,
    )
    db.add(event)
    return event


async def page(db: AsyncSession, query: Select[tuple[AuditEvent]], number: int) -> tuple[list[AuditEvent], int]:
    total = await db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = (await db.scalars(query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
                             .limit(PAGE_SIZE).offset(max(number - 1, 0) * PAGE_SIZE))).all()
    return list(rows), int(total)


def for_employer(employer_id: int) -> Select[tuple[AuditEvent]]:
    return select(AuditEvent).where(AuditEvent.employer_id == employer_id)


def for_employers(employer_ids: list[int]) -> Select[tuple[AuditEvent]]:
    return select(AuditEvent).where(AuditEvent.employer_id.in_(employer_ids))


def everything() -> Select[tuple[AuditEvent]]:
    return select(AuditEvent)
