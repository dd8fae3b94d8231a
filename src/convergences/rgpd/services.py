"""Erasure requests (self-service, decided by the référents), erasure by a CIG administrator, and the
deletion of an employer. Every method checks its permission through ``authz`` first; one transaction each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.accounts.models import Account
from convergences.audit import services as audit
from convergences.audit.actions import Action
from convergences.authz import Actor, Permission, require
from convergences.db import transaction, utcnow
from convergences.employers.models import Employer, Membership
from convergences.employers.services import EmployerService, get_employer
from convergences.errors import FormInvalid, NotFound, ServiceError
from convergences.oidc.services import ProviderService, kick_logouts
from convergences.rgpd import access
from convergences.rgpd.erasure import erase_account
from convergences.rgpd.models import ErasureRequest
from convergences.runtime import Runtime

P = Permission
MESSAGE_LIMIT = 1000


@dataclass
class RequestRow:
    request: ErasureRequest
    account: Account
    employer: Employer


class RgpdService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # -- the person ------------------------------------------------------------------------------

    async def my_data(self, actor: Actor) -> dict[str, Any]:
        """Everything stored about the caller (the canonical document of "Mes données"); a pure read."""
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, actor.account_id)
            if account is None:
                raise NotFound()
            return await access.build(db, self.rt, account)

    async def export_my_data(self, actor: Actor, fmt: str) -> tuple[str, str, str]:
        """The caller's data as a file (body, media type, file name), journaled. Raises FormInvalid."""
        if fmt not in ("json", "csv"):
            raise FormInvalid({"format": "Format inconnu : choisissez JSON ou CSV."})
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, actor.account_id)
            if account is None:
                raise NotFound()
            document = await access.build(db, self.rt, account)
            audit.record(db, actor, Action.DATA_EXPORT, target_type="account", target_id=account.id,
                         target_label=account.full_name, after={"format": fmt})
        name = f"mes-donnees-convergences-{utcnow():%Y%m%d}.{fmt}"
        if fmt == "json":
            return access.to_json(document), "application/json; charset=utf-8", name
        return access.to_csv(document), "text/csv; charset=utf-8", name

    async def my_requests(self, actor: Actor) -> list[RequestRow]:
        """The caller's own erasure requests, newest first (no permission: their own data)."""
        async with transaction(self.rt.maker) as db:
            return await _rows(db, ErasureRequest.account_id == actor.account_id)

    async def request_erasure(self, actor: Actor, message: str) -> int:
        """Ask each employer of the caller to erase their account; return how many requests were made.

        Raises FormInvalid (message too long), ServiceError (CIG staff, already pending, no employer)."""
        message = message.strip()
        if len(message) > MESSAGE_LIMIT:
            raise FormInvalid({"message": f"Votre message ne peut dépasser {MESSAGE_LIMIT} caractères."})
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, actor.account_id)
            if account is None:
                raise NotFound()
            if account.is_staff:
                raise ServiceError("Le compte d'un agent du CIG est effacé par un administrateur du CIG : "
                                   "adressez-lui votre demande.")
            memberships = (await db.scalars(select(Membership).where(Membership.account_id == account.id))).all()
            pending = set((await db.scalars(select(ErasureRequest.employer_id).where(
                ErasureRequest.account_id == account.id, ErasureRequest.decided_at.is_(None)))).all())
            wanted = [m for m in memberships if m.employer_id not in pending]
            if not memberships:
                raise ServiceError("Votre compte n'est rattaché à aucun employeur.")
            if not wanted:
                raise ServiceError("Votre demande d'effacement est déjà en cours d'examen par vos référents.")
            for membership in wanted:
                employer = await get_employer(db, membership.employer_id)
                request = ErasureRequest(account_id=account.id, employer_id=employer.id, message=message)
                db.add(request)
                await db.flush()
                audit.record(db, actor, Action.ERASURE_REQUEST, employer_id=employer.id, target_type="account",
                             target_id=account.id, target_label=account.full_name)
                for referent in await _referents(db, employer.id, exclude=account.id):
                    self.rt.mailer.queue(db, referent.email, "rgpd_erasure_request", person=account.full_name,
                                         employer=employer, message=message,
                                         link=f"{self.rt.settings.base_url}/employeurs/{employer.id}/effacements",
                                         cig_name=self.rt.settings.cig_name)
        self.rt.mailer.kick()
        return len(wanted)

    # -- the référents ---------------------------------------------------------------------------

    async def pending(self, actor: Actor, employer_id: int) -> tuple[Employer, list[RequestRow]]:
        """The employer's pending erasure requests. Raises NotAuthorized, NotFound."""
        require(actor, P.ACCOUNTS_MANAGE, employer_id)
        async with transaction(self.rt.maker) as db:
            employer = await get_employer(db, employer_id)
            return employer, await _rows(db, (ErasureRequest.employer_id == employer_id)
                                         & ErasureRequest.decided_at.is_(None))

    async def decide(self, actor: Actor, employer_id: int, request_id: int, decision: str,
                     reason: str = "") -> str | None:
        """``decision`` "confirmer" (the person leaves the employer; their account is erased with its last membership:
        return the pseudonym) or "refuser" (a reason is required, mailed to the person).

        Raises NotAuthorized, NotFound (another employer's request), FormInvalid, ServiceError."""
        require(actor, P.ACCOUNTS_MANAGE, employer_id)
        confirm = decision == "confirmer"
        reason = reason.strip()
        pseudonym = None
        async with transaction(self.rt.maker) as db:
            request = await db.scalar(select(ErasureRequest).where(ErasureRequest.id == request_id,
                                                                   ErasureRequest.employer_id == employer_id))
            if request is None:
                raise NotFound()
            if decision not in ("confirmer", "refuser"):
                raise ServiceError("Choisissez de confirmer ou de refuser la demande.")
            if not confirm and not reason:
                raise FormInvalid({"reason": "Indiquez la raison du refus : elle sera communiquée à la personne."})
            if len(reason) > MESSAGE_LIMIT:
                raise FormInvalid({"reason": f"La raison ne peut dépasser {MESSAGE_LIMIT} caractères."})
            if request.decided_at is not None:
                raise ServiceError("Cette demande a déjà été traitée.")
            if request.account_id == actor.account_id:
                raise ServiceError("Vous ne pouvez pas traiter votre propre demande : un autre référent "
                                   "de votre employeur doit le faire.")
            account = await db.get(Account, request.account_id)
            membership = await db.scalar(select(Membership).where(Membership.account_id == request.account_id,
                                                                  Membership.employer_id == employer_id))
            assert account is not None
            request.decided_at, request.decided_by_id = utcnow(), actor.account_id
            request.decision, request.decision_reason = ("confirmed", "") if confirm else ("refused", reason)
            if not confirm:
                audit.record(db, actor, Action.ERASURE_REFUSE, employer_id=employer_id, target_type="account",
                             target_id=account.id, target_label=account.full_name, after={"message": reason})
                employer = await get_employer(db, employer_id)
                self.rt.mailer.queue(db, account.email, "rgpd_erasure_refused", account=account, employer=employer,
                                     reason=reason, cig_name=self.rt.settings.cig_name)
            else:
                audit.record(db, actor, Action.ERASURE_CONFIRM, employer_id=employer_id, target_type="account",
                             target_id=account.id, target_label=account.full_name)
                if membership is not None:
                    pseudonym = await self._leave(db, actor, membership, employer_id)
        self.rt.mailer.kick()
        kick_logouts(self.rt)
        return pseudonym

    async def _leave(self, db: AsyncSession, actor: Actor, membership: Membership, employer_id: int) -> str | None:
        """Remove the membership (as a référent's deletion does) and erase the account if it was the last."""
        await EmployerService._ensure_not_last_referent(db, membership)
        account = membership.account
        await db.delete(membership)
        await db.flush()
        await ProviderService(self.rt).end_rp_sessions(db, account_id=account.id, employer_id=employer_id)
        audit.record(db, actor, Action.MEMBERSHIP_DELETE, employer_id=employer_id, target_type="membership",
                     target_id=membership.id, target_label=account.full_name)
        others = await db.scalar(select(func.count()).select_from(Membership).where(
            Membership.account_id == account.id)) or 0
        if others or account.is_staff:
            await self.rt.sessions.end_all(db, account.id)
            return None
        return await erase_account(self.rt, db, actor, account, employer_id=employer_id, reason="request")

    # -- CIG administrators ----------------------------------------------------------------------

    async def account(self, actor: Actor, account_id: int) -> tuple[Account, list[Employer]]:
        """An account and its employers, for the administrator's erasure confirmation."""
        require(actor, P.EMPLOYERS_MANAGE)
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, account_id)
            if account is None:
                raise NotFound()
            employers = (await db.scalars(select(Employer).join(Membership).where(
                Membership.account_id == account_id).order_by(Employer.name))).all()
            return account, list(employers)

    async def erase_by_admin(self, actor: Actor, account_id: int, confirmation: str) -> str:
        """Erase any account (CIG staff included), after the administrator typed its email address.

        Raises NotAuthorized, NotFound, FormInvalid, ServiceError (own account, last référent)."""
        require(actor, P.EMPLOYERS_MANAGE)
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, account_id)
            if account is None:
                raise NotFound()
            if account.id == actor.account_id:
                raise ServiceError("Vous ne pouvez pas effacer votre propre compte.")
            if confirmation.strip().lower() != account.email:
                raise FormInvalid({"confirmation": "Recopiez exactement l'adresse électronique du compte "
                                                   "pour confirmer l'effacement."})
            for membership in (await db.scalars(select(Membership).where(Membership.account_id == account_id))).all():
                await EmployerService._ensure_not_last_referent(db, membership)
            pseudonym = await erase_account(self.rt, db, actor, account, reason="administrator")
        kick_logouts(self.rt)
        return pseudonym

    async def employer_summary(self, actor: Actor, employer_id: int) -> dict[str, Any]:
        """What deleting the employer would do: accounts erased, accounts that only lose the membership."""
        require(actor, P.EMPLOYERS_MANAGE)
        async with transaction(self.rt.maker) as db:
            employer = await get_employer(db, employer_id)
            erased, kept = await _split_members(db, employer_id)
            return {"employer": employer, "erased": len(erased), "kept": len(kept)}

    async def delete_employer(self, actor: Actor, employer_id: int, siret: str) -> int:
        """Delete the employer after its SIRET was typed again; its accounts that serve no other employer
        are erased, the others only lose the membership. Return how many accounts were erased.

        Raises NotAuthorized, NotFound, FormInvalid."""
        require(actor, P.EMPLOYERS_MANAGE)
        async with transaction(self.rt.maker) as db:
            employer = await get_employer(db, employer_id)
            if "".join(siret.split()) != employer.siret:
                raise FormInvalid({"siret": "Recopiez exactement le SIRET de l'employeur pour confirmer "
                                            "la suppression."})
            erased, kept = await _split_members(db, employer_id)
            if actor.account_id in {m.account_id for m in erased}:
                raise ServiceError("Vous ne pouvez pas supprimer un employeur dont vous êtes le seul rattachement.")
            for membership in kept:
                await ProviderService(self.rt).end_rp_sessions(db, account_id=membership.account_id,
                                                               employer_id=employer_id)
                await self.rt.sessions.end_all(db, membership.account_id)
                audit.record(db, actor, Action.MEMBERSHIP_DELETE, employer_id=employer_id, target_type="membership",
                             target_id=membership.id, target_label=membership.account.full_name)
                await db.delete(membership)
            await db.flush()
            for membership in erased:
                await erase_account(self.rt, db, actor, membership.account, employer_id=employer_id,
                                    reason="employer_deleted")
            audit.record(db, actor, Action.EMPLOYER_DELETE, employer_id=employer_id, target_type="employer",
                         target_id=employer_id, target_label=employer.name,
                         before={"name": employer.name, "siret": employer.siret, "kind": employer.kind})
            await db.delete(employer)
        kick_logouts(self.rt)
        return len(erased)


async def _split_members(db: AsyncSession, employer_id: int) -> tuple[list[Membership], list[Membership]]:
    """The employer's memberships whose account goes with it, and those whose account stays (another
    employer, or CIG staff)."""
    memberships = (await db.scalars(select(Membership).where(Membership.employer_id == employer_id)
                                    .order_by(Membership.id))).all()
    counts = dict((await db.execute(select(Membership.account_id, func.count()).where(
        Membership.account_id.in_([m.account_id for m in memberships])).group_by(Membership.account_id))).all())
    erased = [m for m in memberships if counts.get(m.account_id, 0) <= 1 and not m.account.is_staff]
    return erased, [m for m in memberships if m not in erased]


async def _referents(db: AsyncSession, employer_id: int, *, exclude: int) -> list[Account]:
    return list((await db.scalars(select(Account).join(Membership).where(
        Membership.employer_id == employer_id, Membership.is_referent.is_(True),
        Membership.suspended_at.is_(None), Account.id != exclude).order_by(Account.family_name))).all())


async def _rows(db: AsyncSession, condition: Any) -> list[RequestRow]:
    found = (await db.execute(select(ErasureRequest, Account, Employer)
                              .join(Account, Account.id == ErasureRequest.account_id)
                              .join(Employer, Employer.id == ErasureRequest.employer_id)
                              .where(condition).order_by(ErasureRequest.id.desc()))).all()
    return [RequestRow(r, a, e) for r, a, e in found]


