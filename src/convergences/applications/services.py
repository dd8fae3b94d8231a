"""What an agent sees: the services their rights open, grouped by employer."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from convergences.applications.models import Application, Grant, Subscription
from convergences.authz import Actor
from convergences.db import transaction
from convergences.employers.models import Employer, Membership
from convergences.runtime import Runtime


@dataclass(frozen=True)
class Tile:
    application: Application
    role_label: str


@dataclass(frozen=True)
class EmployerTiles:
    employer: Employer
    tiles: list[Tile]


class PortalService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def my_services(self, actor: Actor) -> list[EmployerTiles]:
        """The actor's own rights: active memberships × grants × applications still subscribed."""
        async with transaction(self.rt.maker) as db:
            rows = (await db.execute(
                select(Employer, Application, Grant.role)
                .join(Membership, Membership.employer_id == Employer.id)
                .join(Grant, Grant.membership_id == Membership.id)
                .join(Application, Application.id == Grant.application_id)
                .join(Subscription, (Subscription.employer_id == Employer.id)
                      & (Subscription.application_id == Application.id))
                .where(Membership.account_id == actor.account_id, Membership.suspended_at.is_(None))
                .order_by(Employer.name, Application.position, Application.name))).all()
        grouped: dict[int, EmployerTiles] = {}
        for employer, application, role in rows:
            group = grouped.setdefault(employer.id, EmployerTiles(employer, []))
            group.tiles.append(Tile(application, application.role_label(role) if role else ""))
        return list(grouped.values())
