"""What référents, autorités and correspondants do to one employer: agents, rights, référents, journal.

Every public method takes the actor and the employer id, checks it through ``authz.require`` first,
and scopes every query by that employer id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.accounts.models import Account
from convergences.accounts.services import normalize_email, send_invitation
from convergences.applications.models import Application, Grant, Subscription
from convergences.audit import services as audit
from convergences.audit.actions import Action
from convergences.authz import Actor, Permission, require
from convergences.db import transaction, utcnow
from convergences.employers.models import Employer, Membership, PortfolioEntry
from convergences.errors import FormInvalid, NotFound, ServiceError
from convergences.oidc.services import ProviderService, kick_logouts
from convergences.runtime import Runtime

P = Permission
PAGE_SIZE = 25
SORTS = {
    "nom": (Account.family_name, Account.given_name),
    "email": (Account.email,),
    "connexion": (Account.last_login_at,),
    "statut": (Membership.suspended_at, Account.activated_at),
}


@dataclass
class AgentRow:
    membership: Membership
    grants: dict[int, Grant] = field(default_factory=dict)

    @property
    def account(self) -> Account:
        return self.membership.account


@dataclass
class AgentPage:
    rows: list[AgentRow]
    total: int
    page: int
    pages: int
    q: str
    sort: str
    direction: str
    status: str
    applications: list[Application]
    employer: Employer


@dataclass
class AgentInput:
    given_name: str
    family_name: str
    email: str


async def get_employer(db: AsyncSession, employer_id: int) -> Employer:
    employer = await db.get(Employer, employer_id)
    if employer is None:
        raise NotFound()
    return employer


async def get_membership(db: AsyncSession, employer_id: int, membership_id: int) -> Membership:
    """The membership, only if it belongs to this employer (no IDOR across employers)."""
    membership = await db.scalar(select(Membership).where(Membership.id == membership_id,
                                                          Membership.employer_id == employer_id))
    if membership is None:
        raise NotFound()
    return membership


async def subscribed_applications(db: AsyncSession, employer_id: int) -> list[Application]:
    return list((await db.scalars(select(Application).join(Subscription).where(
        Subscription.employer_id == employer_id).order_by(Application.position, Application.name))).all())


def _snapshot(m: Membership) -> dict[str, Any]:
    return {"given_name": m.account.given_name, "family_name": m.account.family_name,
            "email": m.account.email, "roles": m.roles, "status": m.status}


class EmployerService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # -- reading -------------------------------------------------------------------------------

    async def overview(self, actor: Actor, employer_id: int) -> dict[str, Any]:
        """Employer, counts, subscriptions and its CIG correspondents. Raises NotAuthorized/NotFound."""
        require(actor, P.EMPLOYER_VIEW, employer_id)
        async with transaction(self.rt.maker) as db:
            employer = await get_employer(db, employer_id)
            correspondents = (await db.scalars(select(Account).join(
                PortfolioEntry, PortfolioEntry.correspondent_id == Account.id).where(
                PortfolioEntry.employer_id == employer_id).order_by(Account.family_name))).all()
            referents = (await db.scalars(select(Membership).where(
                Membership.employer_id == employer_id, Membership.is_referent.is_(True)))).all()
            authorities = (await db.scalars(select(Membership).where(
                Membership.employer_id == employer_id, Membership.is_authority.is_(True)))).all()
            counts = dict((await db.execute(
                select(func.coalesce(Membership.suspended_at.is_not(None), False), func.count())
                .where(Membership.employer_id == employer_id).group_by(Membership.suspended_at.is_not(None))
            )).all())
            return {"employer": employer, "correspondents": list(correspondents),
                    "referents": list(referents), "authorities": list(authorities),
                    "applications": await subscribed_applications(db, employer_id),
                    "agents_total": sum(counts.values()), "agents_suspended": counts.get(True, 0)}

    async def agents(self, actor: Actor, employer_id: int, *, q: str = "", sort: str = "nom",
                     direction: str = "asc", status: str = "", page: int = 1) -> AgentPage:
        """One page of the agents grid with each row's grants. Raises NotAuthorized/NotFound."""
        require(actor, P.ACCOUNTS_VIEW, employer_id)
        q = q.strip()[:100]
        sort = sort if sort in SORTS else "nom"
        direction = "desc" if direction == "desc" else "asc"
        async with transaction(self.rt.maker) as db:
            employer = await get_employer(db, employer_id)
            query: Select[Any] = (select(Membership).join(Account, Membership.account_id == Account.id)
                                  .where(Membership.employer_id == employer_id))
            if q:
                like = f"%{_escape_like(q.lower())}%"
                query = query.where(or_(func.lower(Account.family_name).like(like, escape="\\"),
                                        func.lower(Account.given_name).like(like, escape="\\"),
                                        Account.email.like(like, escape="\\")))
            if status == "suspended":
                query = query.where(Membership.suspended_at.is_not(None))
            elif status == "active":
                query = query.where(Membership.suspended_at.is_(None), Account.activated_at.is_not(None))
            elif status == "invited":
                query = query.where(Membership.suspended_at.is_(None), Account.activated_at.is_(None))
            else:
                status = ""
            total = int(await db.scalar(select(func.count()).select_from(query.subquery())) or 0)
            pages = max(1, -(-total // PAGE_SIZE))
            page = min(max(page, 1), pages)
            columns = [c.desc() if direction == "desc" else c.asc() for c in SORTS[sort]]
            memberships = (await db.scalars(query.order_by(*columns, Membership.id)
                                            .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE))).all()
            rows = [AgentRow(m) for m in memberships]
            by_id = {row.membership.id: row for row in rows}
            if by_id:
                for grant in (await db.scalars(select(Grant).where(Grant.membership_id.in_(by_id)))).all():
                    by_id[grant.membership_id].grants[grant.application_id] = grant
            applications = await subscribed_applications(db, employer_id)
        return AgentPage(rows, total, page, pages, q, sort, direction, status, applications, employer)

    async def grid_frame(self, actor: Actor, employer_id: int) -> tuple[Employer, list[Application]]:
        """What a grid fragment needs besides its rows: the employer and its subscribed applications."""
        require(actor, P.ACCOUNTS_VIEW, employer_id)
        async with transaction(self.rt.maker) as db:
            return await get_employer(db, employer_id), await subscribed_applications(db, employer_id)

    async def agent(self, actor: Actor, employer_id: int, membership_id: int) -> AgentRow:
        require(actor, P.ACCOUNTS_VIEW, employer_id)
        async with transaction(self.rt.maker) as db:
            membership = await get_membership(db, employer_id, membership_id)
            row = AgentRow(membership)
            for grant in (await db.scalars(select(Grant).where(Grant.membership_id == membership_id))).all():
                row.grants[grant.application_id] = grant
            return row

    async def journal(self, actor: Actor, employer_id: int, page: int = 1,
                      filters: audit.JournalFilter | None = None) -> audit.JournalPage:
        """The employer's journal, filtered, newest first. Raises NotAuthorized, NotFound."""
        require(actor, P.JOURNAL_VIEW, employer_id)
        async with transaction(self.rt.maker) as db:
            await get_employer(db, employer_id)
            return await audit.filtered_page(db, audit.for_employer(employer_id),
                                             filters or audit.JournalFilter(), page)

    async def journal_csv(self, actor: Actor, employer_id: int, filters: audit.JournalFilter) -> tuple[str, str]:
        """The employer's filtered journal as CSV, and its file name. Raises NotAuthorized, NotFound."""
        require(actor, P.JOURNAL_VIEW, employer_id)
        async with transaction(self.rt.maker) as db:
            employer = await get_employer(db, employer_id)
            body = await audit.export(db, audit.for_employer(employer_id), filters)
            return body, f"journal-{employer.siret}-{utcnow():%Y%m%d}.csv"

    # -- agents --------------------------------------------------------------------------------

    async def create_agent(self, actor: Actor, employer_id: int, data: AgentInput, *,
                           referent: bool = False, errors: dict[str, str] | None = None) -> tuple[Membership, bool]:
        """Create the account (or attach the existing one) and invite it; return (membership, attached).

        ``errors`` are the form's own; they are reported only to an actor allowed to act.
        Raises NotAuthorized, FormInvalid, NotFound, ServiceError (already a member).
        """
        require(actor, P.REFERENTS_DESIGNATE if referent else P.ACCOUNTS_MANAGE, employer_id)
        if errors:
            raise FormInvalid(errors)
        email = normalize_email(data.email)
        async with transaction(self.rt.maker) as db:
            employer = await get_employer(db, employer_id)
            account = await db.scalar(select(Account).where(Account.email == email))
            attached = account is not None
            if account is None:
                account = Account(email=email, given_name=data.given_name.strip(),
                                  family_name=data.family_name.strip())
                db.add(account)
                await db.flush()
                audit.record(db, actor, Action.ACCOUNT_CREATE, employer_id=employer_id, target_type="account",
                             target_id=account.id, target_label=account.full_name,
                             after={"given_name": account.given_name, "family_name": account.family_name,
                                    "email": account.email})
            else:
                existing = await db.scalar(select(Membership).where(Membership.account_id == account.id,
                                                                    Membership.employer_id == employer_id))
                if existing is not None:
                    raise ServiceError("Cette personne a déjà un compte rattaché à votre employeur.", "email")
            membership = Membership(account_id=account.id, employer_id=employer_id, is_referent=referent)
            db.add(membership)
            await db.flush()
            if attached:
                audit.record(db, actor, Action.MEMBERSHIP_ATTACH, employer_id=employer_id,
                             target_type="membership", target_id=membership.id, target_label=account.full_name)
            if referent:
                audit.record(db, actor, Action.REFERENT_DESIGNATE, employer_id=employer_id,
                             target_type="membership", target_id=membership.id, target_label=account.full_name)
            if account.activated_at is None:
                await send_invitation(self.rt, db, actor, account, employer)
        self.rt.mailer.kick()
        return membership, attached

    async def update_agent(self, actor: Actor, employer_id: int, membership_id: int, data: AgentInput,
                           errors: dict[str, str] | None = None) -> None:
        """Change names (and the email while the account is only invited and not shared).

        Raises NotAuthorized, FormInvalid, NotFound, ServiceError.
        """
        require(actor, P.ACCOUNTS_MANAGE, employer_id)
        if errors:
            raise FormInvalid(errors)
        email = normalize_email(data.email)
        async with transaction(self.rt.maker) as db:
            membership = await get_membership(db, employer_id, membership_id)
            account = membership.account
            before = _snapshot(membership)
            shared = await db.scalar(select(func.count()).select_from(Membership).where(
                Membership.account_id == account.id)) or 0
            renamed = (data.given_name.strip(), data.family_name.strip()) != (account.given_name, account.family_name)
            if renamed and (shared > 1 or account.is_staff):
                # The identity of a person serving several employers belongs to none of them.
                raise ServiceError("Ce compte est partagé avec un autre employeur : son nom ne peut pas être "
                                   "modifié depuis votre employeur.", "family_name")
            if email != account.email:
                if account.activated_at is not None or shared > 1 or account.is_staff:
                    raise ServiceError("L'adresse électronique d'un compte activé ou partagé avec un autre "
                                       "employeur ne peut être modifiée que par son titulaire.", "email")
                if await db.scalar(select(Account.id).where(Account.email == email)):
                    raise ServiceError("Cette adresse électronique est déjà utilisée par un autre compte.",
                                       "email")
                account.email = email
            account.given_name = data.given_name.strip()
            account.family_name = data.family_name.strip()
            await db.flush()
            audit.record(db, actor, Action.ACCOUNT_UPDATE, employer_id=employer_id, target_type="membership",
                         target_id=membership.id, target_label=account.full_name,
                         before=before, after=_snapshot(membership))
            if email != before["email"]:
                await send_invitation(self.rt, db, actor, account, await get_employer(db, employer_id))
        self.rt.mailer.kick()

    async def set_suspended(self, actor: Actor, employer_id: int, membership_id: int, suspended: bool) -> None:
        """Suspend or reactivate; suspension ends every session of the account at once."""
        require(actor, P.ACCOUNTS_MANAGE, employer_id)
        async with transaction(self.rt.maker) as db:
            membership = await get_membership(db, employer_id, membership_id)
            if membership.account_id == actor.account_id:
                raise ServiceError("Vous ne pouvez pas suspendre votre propre compte.")
            if suspended and membership.suspended_at is None:
                await self.suspend_in(db, actor, membership)
            elif not suspended and membership.suspended_at is not None:
                membership.suspended_at = None
                audit.record(db, actor, Action.MEMBERSHIP_REACTIVATE, employer_id=employer_id,
                             target_type="membership", target_id=membership.id,
                             target_label=membership.account.full_name)
            else:
                return
        kick_logouts(self.rt)

    async def suspend_in(self, db: AsyncSession, actor: Actor | None, membership: Membership, *,
                         now: datetime | None = None, after: dict[str, Any] | None = None) -> None:
        """Suspend in the caller's transaction (also the inactivity job's path, actor None = "système"):
        end the portal and applications' sessions (back-channel logout queued) and journal it.
        Raises ServiceError for the employer's last active référent."""
        await self._ensure_not_last_referent(db, membership)
        membership.suspended_at = now or utcnow()
        await self._end_everything(db, membership.account_id)
        audit.record(db, actor, Action.MEMBERSHIP_SUSPEND, employer_id=membership.employer_id,
                     target_type="membership", target_id=membership.id,
                     target_label=membership.account.full_name, after=after)

    async def delete_agent(self, actor: Actor, employer_id: int, membership_id: int) -> None:
        """Remove the agent from the employer; an account left with no employer is erased."""
        require(actor, P.ACCOUNTS_MANAGE, employer_id)
        async with transaction(self.rt.maker) as db:
            membership = await get_membership(db, employer_id, membership_id)
            if membership.account_id == actor.account_id:
                raise ServiceError("Vous ne pouvez pas supprimer votre propre compte.")
            await self._ensure_not_last_referent(db, membership)
            account = membership.account
            before = _snapshot(membership)
            await db.delete(membership)
            await db.flush()
            await self._end_everything(db, account.id)
            audit.record(db, actor, Action.MEMBERSHIP_DELETE, employer_id=employer_id, target_type="membership",
                         target_id=membership_id, target_label=account.full_name, before=before)
            others = await db.scalar(select(func.count()).select_from(Membership).where(
                Membership.account_id == account.id)) or 0
            if not others and not account.is_staff:
                # The account goes with its last membership: erased, journal pseudonymised (RGPD art. 17).
                from convergences.rgpd.erasure import erase_account

                await erase_account(self.rt, db, actor, account, employer_id=employer_id)
        kick_logouts(self.rt)

    async def resend_invitation(self, actor: Actor, employer_id: int, membership_id: int) -> None:
        require(actor, P.INVITATIONS_RESEND, employer_id)
        async with transaction(self.rt.maker) as db:
            membership = await get_membership(db, employer_id, membership_id)
            if membership.account.activated_at is not None:
                raise ServiceError("Ce compte est déjà activé : aucune invitation n'est nécessaire.")
            await send_invitation(self.rt, db, actor, membership.account, await get_employer(db, employer_id))
        self.rt.mailer.kick()

    # -- rights --------------------------------------------------------------------------------

    async def set_grant(self, actor: Actor, employer_id: int, membership_id: int, application_id: int,
                        enabled: bool, role: str | None) -> AgentRow:
        """Grant, change or revoke one application right; return the refreshed row.

        Raises NotAuthorized, NotFound, ServiceError (not subscribed, unknown role).
        """
        require(actor, P.GRANTS_MANAGE, employer_id)
        async with transaction(self.rt.maker) as db:
            membership = await get_membership(db, employer_id, membership_id)
            application = await db.scalar(select(Application).join(Subscription).where(
                Application.id == application_id, Subscription.employer_id == employer_id))
            if application is None:
                raise NotFound()
            role = (role or "").strip() or None
            if application.roles:
                if enabled and role is None:
                    role = application.roles[0]["code"]
                if role is not None and role not in application.role_codes:
                    raise ServiceError(f"Rôle inconnu pour {application.name}.")
            else:
                role = None
            grant = await db.scalar(select(Grant).where(Grant.membership_id == membership.id,
                                                        Grant.application_id == application.id))
            label = f"{membership.account.full_name} — {application.name}"
            if enabled and grant is None:
                grant = Grant(membership_id=membership.id, application_id=application.id, role=role)
                db.add(grant)
                audit.record(db, actor, Action.GRANT_ADD, employer_id=employer_id, target_type="grant",
                             target_id=membership.id, target_label=label, application_id=application.id,
                             after={"application": application.slug, "role": role})
            elif enabled and grant is not None and grant.role != role:
                audit.record(db, actor, Action.GRANT_CHANGE, employer_id=employer_id, target_type="grant",
                             target_id=membership.id, target_label=label, application_id=application.id,
                             before={"application": application.slug, "role": grant.role},
                             after={"application": application.slug, "role": role})
                grant.role = role
            elif not enabled and grant is not None:
                await self.revoke_grant_in(db, actor, membership, application, grant)
            await db.flush()
            row = AgentRow(membership)
            for g in (await db.scalars(select(Grant).where(Grant.membership_id == membership.id))).all():
                row.grants[g.application_id] = g
        kick_logouts(self.rt)
        return row

    async def revoke_grant_in(self, db: AsyncSession, actor: Actor | None, membership: Membership,
                              application: Application, grant: Grant) -> None:
        """Revoke one right in the caller's transaction (also the access review's "Retirer"): journal it,
        and end the application's sessions for this employer at once (back-channel logout queued)."""
        audit.record(db, actor, Action.GRANT_REVOKE, employer_id=membership.employer_id, target_type="grant",
                     target_id=membership.id, target_label=f"{membership.account.full_name} — {application.name}",
                     application_id=application.id, before={"application": application.slug, "role": grant.role})
        await db.delete(grant)
        await ProviderService(self.rt).end_rp_sessions(
            db, account_id=membership.account_id, application_id=application.id, employer_id=membership.employer_id)

    # -- référents -----------------------------------------------------------------------------

    async def members(self, actor: Actor, employer_id: int) -> list[Membership]:
        """Every member, référents first (for the référents page)."""
        require(actor, P.REFERENTS_DESIGNATE, employer_id)
        async with transaction(self.rt.maker) as db:
            await get_employer(db, employer_id)
            return list((await db.scalars(select(Membership).join(Account).where(
                Membership.employer_id == employer_id).order_by(
                Membership.is_referent.desc(), Account.family_name, Account.given_name))).all())

    async def set_referent(self, actor: Actor, employer_id: int, membership_id: int, referent: bool) -> None:
        """Designate or revoke a référent; the last active référent cannot be revoked."""
        require(actor, P.REFERENTS_DESIGNATE, employer_id)
        async with transaction(self.rt.maker) as db:
            membership = await get_membership(db, employer_id, membership_id)
            if membership.is_referent == referent:
                return
            if not referent:
                await self._ensure_not_last_referent(db, membership)
            elif membership.suspended_at is not None:
                raise ServiceError("Réactivez d'abord ce compte avant de le désigner référent.")
            membership.is_referent = referent
            audit.record(db, actor, Action.REFERENT_DESIGNATE if referent else Action.REFERENT_REVOKE,
                         employer_id=employer_id, target_type="membership", target_id=membership.id,
                         target_label=membership.account.full_name)
            # A change of privilege: the person's sessions restart with a fresh id.
            await self.rt.sessions.end_all(db, membership.account_id)

    async def _end_everything(self, db: AsyncSession, account_id: int) -> None:
        """Portal sessions and applications' sessions of the account (back-channel logout queued)."""
        await ProviderService(self.rt).end_rp_sessions(db, account_id=account_id)
        await self.rt.sessions.end_all(db, account_id)

    @staticmethod
    async def _ensure_not_last_referent(db: AsyncSession, membership: Membership) -> None:
        if not membership.is_referent or membership.suspended_at is not None:
            return
        others = await db.scalar(select(func.count()).select_from(Membership).where(
            Membership.employer_id == membership.employer_id, Membership.is_referent.is_(True),
            Membership.suspended_at.is_(None), Membership.id != membership.id)) or 0
        if not others:
            raise ServiceError("C'est le dernier référent administrateur de cet employeur : désignez d'abord "
                               "un successeur, pour que l'employeur ne reste jamais sans référent.")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
