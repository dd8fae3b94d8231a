"""CIG staff: employers, catalogue, subscriptions, portfolios, deployment progress, journal.

The OpenID Connect clients of the catalogue's applications are managed in :mod:`convergences.admin.clients`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.accounts.models import Account
from convergences.accounts.services import normalize_email, send_invitation
from convergences.applications.models import Application, Grant, Subscription
from convergences.audit import services as audit
from convergences.audit.actions import Action
from convergences.audit.models import AuditEvent
from convergences.authz import Actor, Permission, require
from convergences.db import transaction, utcnow
from convergences.employers.models import Employer, Membership, PortfolioEntry
from convergences.employers.services import get_employer
from convergences.errors import NotFound, ServiceError
from convergences.runtime import Runtime

P = Permission


@dataclass
class EmployerInput:
    name: str
    siret: str
    kind: str


@dataclass
class PersonInput:
    given_name: str
    family_name: str
    email: str


@dataclass
class ApplicationInput:
    slug: str
    name: str
    description: str
    launch_url: str
    roles: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Progress:
    employer: Employer
    referents: int = 0
    invited: int = 0
    activated: int = 0
    active: int = 0
    applications_subscribed: int = 0
    applications_in_use: int = 0
    correspondents: list[str] = field(default_factory=list)

    @property
    def has_referent(self) -> bool:
        return self.referents > 0


@dataclass
class ProgressTotals:
    label: str
    employers: int = 0
    with_referent: int = 0
    invited: int = 0
    activated: int = 0
    active: int = 0

    @property
    def percent(self) -> int:
        return round(100 * self.with_referent / self.employers) if self.employers else 0


class AdminService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # -- employers -----------------------------------------------------------------------------

    async def employer(self, actor: Actor, employer_id: int) -> dict[str, Any]:
        require(actor, P.EMPLOYERS_MANAGE)
        async with transaction(self.rt.maker) as db:
            employer = await get_employer(db, employer_id)
            subscribed = set((await db.scalars(select(Subscription.application_id).where(
                Subscription.employer_id == employer_id))).all())
            portfolio = set((await db.scalars(select(PortfolioEntry.correspondent_id).where(
                PortfolioEntry.employer_id == employer_id))).all())
            authorities = (await db.scalars(select(Membership).where(
                Membership.employer_id == employer_id, Membership.is_authority.is_(True)))).all()
            return {"employer": employer, "subscribed": subscribed, "portfolio": portfolio,
                    "authorities": list(authorities),
                    "applications": list((await db.scalars(select(Application).order_by(
                        Application.position, Application.name))).all()),
                    "correspondents": await _correspondents(db)}

    async def create_employer(self, actor: Actor, data: EmployerInput, authority: PersonInput,
                              application_ids: list[int]) -> Employer:
        """Create the employer and invite its autorité territoriale. Raises ServiceError (SIRET taken)."""
        require(actor, P.EMPLOYERS_MANAGE)
        async with transaction(self.rt.maker) as db:
            if await db.scalar(select(Employer.id).where(Employer.siret == data.siret)):
                raise ServiceError("Un employeur porte déjà ce SIRET.", "siret")
            employer = Employer(name=data.name.strip(), siret=data.siret, kind=data.kind)
            db.add(employer)
            await db.flush()
            audit.record(db, actor, Action.EMPLOYER_CREATE, employer_id=employer.id, target_type="employer",
                         target_id=employer.id, target_label=employer.name,
                         after={"name": employer.name, "siret": employer.siret, "kind": employer.kind})
            await self._subscribe(db, actor, employer, set(application_ids))
            await self._add_authority(db, actor, employer, authority)
        self.rt.mailer.kick()
        return employer

    async def update_employer(self, actor: Actor, employer_id: int, data: EmployerInput,
                              application_ids: list[int], correspondent_ids: list[int]) -> None:
        require(actor, P.EMPLOYERS_MANAGE)
        async with transaction(self.rt.maker) as db:
            employer = await get_employer(db, employer_id)
            if await db.scalar(select(Employer.id).where(Employer.siret == data.siret, Employer.id != employer_id)):
                raise ServiceError("Un employeur porte déjà ce SIRET.", "siret")
            before = {"name": employer.name, "siret": employer.siret, "kind": employer.kind}
            employer.name, employer.siret, employer.kind = data.name.strip(), data.siret, data.kind
            after = {"name": employer.name, "siret": employer.siret, "kind": employer.kind}
            if before != after:
                audit.record(db, actor, Action.EMPLOYER_UPDATE, employer_id=employer.id, target_type="employer",
                             target_id=employer.id, target_label=employer.name, before=before, after=after)
            await self._subscribe(db, actor, employer, set(application_ids))
            await self._set_portfolio(db, actor, employer, set(correspondent_ids))

    async def add_authority(self, actor: Actor, employer_id: int, person: PersonInput) -> None:
        require(actor, P.EMPLOYERS_MANAGE)
        async with transaction(self.rt.maker) as db:
            await self._add_authority(db, actor, await get_employer(db, employer_id), person)
        self.rt.mailer.kick()

    async def _add_authority(self, db: AsyncSession, actor: Actor, employer: Employer, person: PersonInput) -> None:
        email = normalize_email(person.email)
        account = await db.scalar(select(Account).where(Account.email == email))
        if account is None:
            account = Account(email=email, given_name=person.given_name.strip(),
                              family_name=person.family_name.strip())
            db.add(account)
            await db.flush()
            audit.record(db, actor, Action.ACCOUNT_CREATE, employer_id=employer.id, target_type="account",
                         target_id=account.id, target_label=account.full_name)
        membership = await db.scalar(select(Membership).where(Membership.account_id == account.id,
                                                              Membership.employer_id == employer.id))
        if membership is None:
            membership = Membership(account_id=account.id, employer_id=employer.id)
            db.add(membership)
        elif membership.is_authority:
            raise ServiceError("Cette personne est déjà autorité territoriale de cet employeur.", "email")
        membership.is_authority = True
        await db.flush()
        audit.record(db, actor, Action.AUTHORITY_DESIGNATE, employer_id=employer.id, target_type="membership",
                     target_id=membership.id, target_label=account.full_name)
        if account.activated_at is None:
            await send_invitation(self.rt, db, actor, account, employer)

    async def _subscribe(self, db: AsyncSession, actor: Actor, employer: Employer, wanted: set[int]) -> None:
        apps = {a.id: a for a in (await db.scalars(select(Application))).all()}
        unknown = wanted - set(apps)
        if unknown:
            raise ServiceError("Application inconnue.")
        current = {s.application_id: s for s in (await db.scalars(select(Subscription).where(
            Subscription.employer_id == employer.id))).all()}
        for app_id in wanted - set(current):
            db.add(Subscription(employer_id=employer.id, application_id=app_id))
            audit.record(db, actor, Action.SUBSCRIPTION_ADD, employer_id=employer.id, target_type="application",
                         target_id=app_id, target_label=apps[app_id].name)
        for app_id in set(current) - wanted:
            await db.delete(current[app_id])
            audit.record(db, actor, Action.SUBSCRIPTION_REMOVE, employer_id=employer.id,
                         target_type="application", target_id=app_id, target_label=apps[app_id].name)

    async def _set_portfolio(self, db: AsyncSession, actor: Actor, employer: Employer, wanted: set[int]) -> None:
        staff = {a.id: a for a in await _correspondents(db)}
        if wanted - set(staff):
            raise ServiceError("Correspondant inconnu.")
        current = {p.correspondent_id: p for p in (await db.scalars(select(PortfolioEntry).where(
            PortfolioEntry.employer_id == employer.id))).all()}
        for cid in wanted - set(current):
            db.add(PortfolioEntry(correspondent_id=cid, employer_id=employer.id))
            audit.record(db, actor, Action.PORTFOLIO_ADD, employer_id=employer.id, target_type="account",
                         target_id=cid, target_label=staff[cid].full_name)
        for cid in set(current) - wanted:
            await db.delete(current[cid])
            audit.record(db, actor, Action.PORTFOLIO_REMOVE, employer_id=employer.id, target_type="account",
                         target_id=cid, target_label=staff[cid].full_name)

    async def employers(self, actor: Actor, q: str = "") -> dict[str, Any]:
        """Employers (optionally filtered by name) and the catalogue, for the list and creation form."""
        require(actor, P.EMPLOYERS_MANAGE)
        async with transaction(self.rt.maker) as db:
            query = select(Employer).order_by(Employer.name)
            if q.strip():
                query = query.where(func.lower(Employer.name).like(f"%{q.strip().lower()}%"))
            return {"employers": list((await db.scalars(query)).all()),
                    "applications": list((await db.scalars(select(Application).order_by(
                        Application.position, Application.name))).all())}

    # -- catalogue -----------------------------------------------------------------------------

    async def applications(self, actor: Actor) -> list[Application]:
        require(actor, P.CATALOGUE_MANAGE)
        async with transaction(self.rt.maker) as db:
            return list((await db.scalars(select(Application).order_by(Application.position,
                                                                         Application.name))).all())

    async def application(self, actor: Actor, application_id: int) -> Application:
        require(actor, P.CATALOGUE_MANAGE)
        async with transaction(self.rt.maker) as db:
            application = await db.get(Application, application_id)
            if application is None:
                raise NotFound()
            return application

    async def save_application(self, actor: Actor, application_id: int | None, data: ApplicationInput) -> Application:
        """Create (id None) or update an application. Raises ServiceError (slug taken)."""
        require(actor, P.CATALOGUE_MANAGE)
        async with transaction(self.rt.maker) as db:
            clash = await db.scalar(select(Application.id).where(Application.slug == data.slug))
            if clash is not None and clash != application_id:
                raise ServiceError("Cet identifiant est déjà utilisé par une autre application.", "slug")
            values = {"slug": data.slug, "name": data.name.strip(), "description": data.description.strip(),
                      "launch_url": data.launch_url.strip(), "roles": data.roles}
            if application_id is None:
                position = (await db.scalar(select(func.max(Application.position))) or 0) + 1
                application = Application(position=position, **values)
                db.add(application)
                await db.flush()
                audit.record(db, actor, Action.APPLICATION_CREATE, target_type="application",
                             target_id=application.id, target_label=application.name, after=values)
                return application
            application = await db.get(Application, application_id)
            if application is None:
                raise NotFound()
            removed = set(application.role_codes) - {r["code"] for r in data.roles}
            if removed and await db.scalar(select(func.count()).select_from(Grant).where(
                    Grant.application_id == application.id, Grant.role.in_(removed))):
                raise ServiceError("Des agents ont encore un rôle que vous retirez : retirez-leur d'abord "
                                   "ce rôle.", "roles")
            before = {k: getattr(application, k) for k in values}
            for key, value in values.items():
                setattr(application, key, value)
            audit.record(db, actor, Action.APPLICATION_UPDATE, target_type="application",
                         target_id=application.id, target_label=application.name, before=before, after=values)
            return application

    # -- staff ---------------------------------------------------------------------------------

    async def correspondents(self, actor: Actor) -> list[Account]:
        require(actor, P.PORTFOLIOS_MANAGE)
        async with transaction(self.rt.maker) as db:
            return await _correspondents(db)

    async def portfolios(self, actor: Actor) -> list[tuple[Account, list[Employer]]]:
        """Each correspondent with the employers of their portfolio. Raises NotAuthorized."""
        require(actor, P.PORTFOLIOS_MANAGE)
        async with transaction(self.rt.maker) as db:
            staff = await _correspondents(db)
            held: dict[int, list[Employer]] = {a.id: [] for a in staff}
            for cid, employer in (await db.execute(
                    select(PortfolioEntry.correspondent_id, Employer)
                    .join(Employer, Employer.id == PortfolioEntry.employer_id)
                    .order_by(Employer.name))).all():
                held.setdefault(cid, []).append(employer)
            return [(a, held[a.id]) for a in staff]

    async def create_correspondent(self, actor: Actor, person: PersonInput, phone: str) -> Account:
        require(actor, P.PORTFOLIOS_MANAGE)
        email = normalize_email(person.email)
        async with transaction(self.rt.maker) as db:
            account = await db.scalar(select(Account).where(Account.email == email))
            if account is not None and account.is_correspondent:
                raise ServiceError("Cette personne est déjà correspondant CIG.", "email")
            if account is None:
                account = Account(email=email, given_name=person.given_name.strip(),
                                  family_name=person.family_name.strip())
                db.add(account)
            account.is_correspondent = True
            account.phone_contact = phone.strip() or None
            await db.flush()
            audit.record(db, actor, Action.STAFF_CREATE, target_type="account", target_id=account.id,
                         target_label=account.full_name, after={"role": "correspondent"})
            if account.activated_at is None:
                await send_invitation(self.rt, db, actor, account, None)
        self.rt.mailer.kick()
        return account

    # -- deployment progress and journal -------------------------------------------------------

    async def progress(self, actor: Actor, q: str = "") -> tuple[list[Progress], list[ProgressTotals]]:
        """Per employer in the actor's scope, and totals per correspondent (CIG admin: all employers)."""
        require(actor, P.PROGRESS_VIEW)
        async with transaction(self.rt.maker) as db:
            query = select(Employer).order_by(Employer.name)
            if not actor.is_cig_admin:
                query = query.where(Employer.id.in_(actor.portfolio))
            if q.strip():
                query = query.where(func.lower(Employer.name).like(f"%{q.strip().lower()}%"))
            employers = (await db.scalars(query)).all()
            ids = [e.id for e in employers]
            stats = {e.id: Progress(e) for e in employers}
            if ids:
                live = Membership.suspended_at.is_(None)
                for eid, refs, invited, activated in (await db.execute(
                        select(Membership.employer_id,
                               func.sum(case((Membership.is_referent & live, 1), else_=0)),
                               func.sum(case((Account.activated_at.is_(None) & live, 1), else_=0)),
                               func.sum(case((Account.activated_at.is_not(None) & live, 1), else_=0)))
                        .join(Account, Account.id == Membership.account_id)
                        .where(Membership.employer_id.in_(ids)).group_by(Membership.employer_id))).all():
                    stats[eid].referents, stats[eid].invited = int(refs or 0), int(invited or 0)
                    stats[eid].activated = stats[eid].active = int(activated or 0)
                for eid, count in (await db.execute(
                        select(Subscription.employer_id, func.count()).where(Subscription.employer_id.in_(ids))
                        .group_by(Subscription.employer_id))).all():
                    stats[eid].applications_subscribed = int(count)
                for eid, count in (await db.execute(
                        select(Membership.employer_id, func.count(distinct(Grant.application_id)))
                        .join(Grant, Grant.membership_id == Membership.id)
                        .where(Membership.employer_id.in_(ids), Membership.suspended_at.is_(None))
                        .group_by(Membership.employer_id))).all():
                    stats[eid].applications_in_use = int(count)
                for eid, given, family in (await db.execute(
                        select(PortfolioEntry.employer_id, Account.given_name, Account.family_name)
                        .join(Account, Account.id == PortfolioEntry.correspondent_id)
                        .where(PortfolioEntry.employer_id.in_(ids)))).all():
                    stats[eid].correspondents.append(f"{given} {family}")
        rows = list(stats.values())
        totals: dict[str, ProgressTotals] = {}
        for row in rows:
            for label in row.correspondents or ["Sans correspondant"]:
                t = totals.setdefault(label, ProgressTotals(label))
                t.employers += 1
                t.with_referent += int(row.has_referent)
                t.invited += row.invited
                t.activated += row.activated
                t.active += row.active
        overall = ProgressTotals("Total")
        for row in rows:
            overall.employers += 1
            overall.with_referent += int(row.has_referent)
            overall.invited += row.invited
            overall.activated += row.activated
            overall.active += row.active
        return rows, [*sorted(totals.values(), key=lambda t: t.label), overall]

    async def dashboard(self, actor: Actor, q: str = "") -> tuple[list[Progress], list[ProgressTotals]]:
        """The CIG-wide deployment progress (CIG admin only, unlike :meth:`progress`)."""
        require(actor, P.EMPLOYERS_MANAGE)
        return await self.progress(actor, q)

    async def global_journal(self, actor: Actor, page: int = 1,
                             filters: audit.JournalFilter | None = None) -> audit.JournalPage:
        """Every journal entry, filtered, newest first (CIG admin only). Raises NotAuthorized."""
        require(actor, P.CIG_JOURNAL_VIEW)
        async with transaction(self.rt.maker) as db:
            return await audit.filtered_page(db, audit.everything(), filters or audit.JournalFilter(), page)

    def _journal_scope(self, actor: Actor) -> Select[tuple[AuditEvent]]:
        if actor.is_cig_admin:
            return audit.everything()
        require(actor, P.PROGRESS_VIEW)
        return audit.for_employers(sorted(actor.portfolio))

    async def journal(self, actor: Actor, page: int = 1,
                      filters: audit.JournalFilter | None = None) -> audit.JournalPage:
        """The CIG admin sees everything; a correspondent the journals of their portfolio."""
        query = self._journal_scope(actor)
        async with transaction(self.rt.maker) as db:
            return await audit.filtered_page(db, query, filters or audit.JournalFilter(), page)

    async def journal_csv(self, actor: Actor, filters: audit.JournalFilter, *, everything: bool) -> tuple[str, str]:
        """The filtered journal as CSV: the global one (``everything``, CIG admin only) or the actor's
        portfolio's. Returns (body, file name). Raises NotAuthorized."""
        if everything:
            require(actor, P.CIG_JOURNAL_VIEW)
            query, name = audit.everything(), "journal-global"
        else:
            query, name = self._journal_scope(actor), "journal-portefeuille"
        async with transaction(self.rt.maker) as db:
            body = await audit.export(db, query, filters)
            return body, f"{name}-{utcnow():%Y%m%d}.csv"



async def _correspondents(db: AsyncSession) -> list[Account]:
    return list((await db.scalars(select(Account).where(Account.is_correspondent.is_(True))
                                  .order_by(Account.family_name, Account.given_name))).all())
