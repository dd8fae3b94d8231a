"""Right of access (RGPD art. 15): everything stored about the caller, as a registry of sections.

The JSON document (:func:`build`) is the canonical form; the HTML page and the CSV are derived from it.
Each section is one async function ``(ctx) -> list[dict]`` (one dict per item) registered with
:func:`register_section`; a table added tomorrow gets its section in one line::

    register_section("second_factors", "Seconds facteurs d'authentification", second_factors)

A section must never return a secret or a hash (password hash, TOTP secret, token or code hashes,
session ids): ``tests/integration/test_rgpd_access.py`` checks the known ones never appear.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.accounts.models import Account, Invitation
from convergences.applications.models import Application, Grant, Subscription
from convergences.audit.actions import LABELS
from convergences.audit.models import AuditEvent, AuditPersonKey
from convergences.audit.services import PARIS, neutralise
from convergences.db import utcnow
from convergences.employers.models import Employer, Membership
from convergences.oidc.models import Client, RpSession, SubjectSalt
from convergences.oidc.services import subject, user_claims
from convergences.rgpd.models import ErasureRequest
from convergences.runtime import Runtime
from convergences.security.models import LoginSession

JOURNAL_LIMIT = 5000
ALL_SCOPES = frozenset({"openid", "profile", "email"})


@dataclass
class AccessContext:
    """What a section reads from: the session, the runtime, the person, and their journal key id."""

    db: AsyncSession
    rt: Runtime
    account: Account
    key_id: int | None


SectionFunction = Callable[[AccessContext], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    function: SectionFunction


SECTIONS: list[Section] = []


def register_section(key: str, title: str, function: SectionFunction) -> SectionFunction:
    """Add (or replace) a section of "Mes données"; sections appear in registration order."""
    SECTIONS[:] = [s for s in SECTIONS if s.key != key]
    SECTIONS.append(Section(key, title, function))
    return function


def section(key: str, title: str) -> Callable[[SectionFunction], SectionFunction]:
    """Decorator form of :func:`register_section`."""
    return lambda function: register_section(key, title, function)


def _time(value: datetime | None) -> str | None:
    return value.astimezone(PARIS).isoformat(timespec="seconds") if value else None


# -- the sections -------------------------------------------------------------------------------------

@section("identity", "Identité")
async def identity(ctx: AccessContext) -> list[dict[str, Any]]:
    a = ctx.account
    default = await ctx.db.get(Employer, a.default_employer_id) if a.default_employer_id else None
    return [{"given_name": a.given_name, "family_name": a.family_name, "email": a.email,
             "phone_contact": a.phone_contact, "cig_admin": a.is_cig_admin, "correspondent": a.is_correspondent,
             "created_at": _time(a.created_at), "activated_at": _time(a.activated_at),
             "last_login_at": _time(a.last_login_at), "default_employer": default.name if default else None}]


@section("memberships", "Employeurs et rôles")
async def memberships(ctx: AccessContext) -> list[dict[str, Any]]:
    rows = (await ctx.db.execute(select(Membership, Employer).join(Employer, Employer.id == Membership.employer_id)
                                 .where(Membership.account_id == ctx.account.id).order_by(Employer.name))).all()
    return [{"employer": e.name, "siret": e.siret, "roles": m.roles, "status": m.status,
             "since": _time(m.created_at), "suspended_at": _time(m.suspended_at)} for m, e in rows]


@section("grants", "Droits d'accès aux applications")
async def grants(ctx: AccessContext) -> list[dict[str, Any]]:
    rows = (await ctx.db.execute(
        select(Grant, Application, Employer).join(Membership, Membership.id == Grant.membership_id)
        .join(Application, Application.id == Grant.application_id).join(Employer, Employer.id == Membership.employer_id)
        .where(Membership.account_id == ctx.account.id).order_by(Employer.name, Application.name))).all()
    return [{"employer": e.name, "application": a.name, "application_role": a.role_label(g.role) or None,
             "since": _time(g.created_at)} for g, a, e in rows]


@section("applications", "Ce que reçoit chaque application")
async def applications(ctx: AccessContext) -> list[dict[str, Any]]:
    """Per OIDC client of each application the person has a right to (active membership, subscribed):
    the claims it can receive, computed by the provider's own claims code with every supported scope."""
    rows = (await ctx.db.execute(
        select(Client, Application, Employer, Grant.role).join(Application, Application.id == Client.application_id)
        .join(Grant, Grant.application_id == Application.id).join(Membership, Membership.id == Grant.membership_id)
        .join(Employer, Employer.id == Membership.employer_id)
        .join(Subscription, (Subscription.employer_id == Employer.id) & (Subscription.application_id == Application.id))
        .where(Membership.account_id == ctx.account.id, Membership.suspended_at.is_(None))
        .order_by(Application.name, Employer.name, Client.id))).all()
    # The pseudonym key exists once any application was used; never created by a read.
    has_salt = await ctx.db.get(SubjectSalt, 1) is not None
    found = []
    for client, application, employer, role in rows:
        claims = user_claims(ctx.account, set(ALL_SCOPES), client, employer, role, application)
        claims = {"sub": await subject(ctx.db, ctx.rt, client, ctx.account.id) if has_salt else
                  "(attribué à la première connexion)", **claims}
        found.append({"application": application.name, "client": client.name or client.client_id,
                      "employer": employer.name, "claims": claims})
    return found


@section("sessions", "Sessions de connexion en cours")
async def sessions(ctx: AccessContext) -> list[dict[str, Any]]:
    rows = (await ctx.db.scalars(select(LoginSession).where(LoginSession.account_id == ctx.account.id)
                                 .order_by(LoginSession.created_at.desc()))).all()
    return [{"opened_at": _time(s.created_at), "last_seen_at": _time(s.last_seen_at),
             "expires_at": _time(s.expires_at), "ip": s.ip, "user_agent": s.user_agent} for s in rows]


@section("application_sessions", "Sessions ouvertes dans les applications")
async def application_sessions(ctx: AccessContext) -> list[dict[str, Any]]:
    rows = (await ctx.db.execute(select(RpSession, Client).join(Client, Client.id == RpSession.client_pk)
                                 .where(RpSession.account_id == ctx.account.id, RpSession.ended_at.is_(None))
                                 .order_by(RpSession.created_at.desc()))).all()
    return [{"client": c.name or c.client_id, "opened_at": _time(rp.created_at)} for rp, c in rows]


def _journal_row(e: AuditEvent, employers: dict[int, str]) -> dict[str, Any]:
    return {"at": _time(e.at), "action": LABELS.get(e.action, e.action), "actor": e.actor_label,
            "target": e.target_label, "employer": employers.get(e.employer_id or 0), "before": e.before,
            "after": e.after, "ip": e.ip}


async def _journal(ctx: AccessContext, logins: bool) -> list[dict[str, Any]]:
    if ctx.key_id is None:
        return []
    is_login = AuditEvent.action.like("account:login%")
    query = (select(AuditEvent).where(or_(AuditEvent.actor_key_id == ctx.key_id,
                                          AuditEvent.subject_key_id == ctx.key_id), AuditEvent.purged_at.is_(None))
             .where(is_login if logins else ~is_login)
             .order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(JOURNAL_LIMIT))
    events = (await ctx.db.scalars(query)).all()
    ids = {e.employer_id for e in events if e.employer_id}
    employers = dict((await ctx.db.execute(select(Employer.id, Employer.name).where(Employer.id.in_(ids)))).all())
    return [_journal_row(e, employers) for e in events]


@section("logins", "Historique de connexion")
async def logins(ctx: AccessContext) -> list[dict[str, Any]]:
    return await _journal(ctx, logins=True)


@section("journal", "Journal : ce que vous avez fait et ce qui vous concerne")
async def journal(ctx: AccessContext) -> list[dict[str, Any]]:
    return await _journal(ctx, logins=False)


@section("invitations", "Invitations en attente")
async def invitations(ctx: AccessContext) -> list[dict[str, Any]]:
    rows = (await ctx.db.execute(
        select(Invitation, Employer).outerjoin(Employer, Employer.id == Invitation.employer_id)
        .where(Invitation.account_id == ctx.account.id, Invitation.used_at.is_(None),
               Invitation.revoked_at.is_(None), Invitation.expires_at > utcnow())
        .order_by(Invitation.created_at.desc()))).all()
    return [{"sent_at": _time(i.created_at), "expires_at": _time(i.expires_at),
             "employer": e.name if e else None} for i, e in rows]


@section("erasure_requests", "Demandes d'effacement")
async def erasure_requests(ctx: AccessContext) -> list[dict[str, Any]]:
    rows = (await ctx.db.execute(
        select(ErasureRequest, Employer).join(Employer, Employer.id == ErasureRequest.employer_id)
        .where(ErasureRequest.account_id == ctx.account.id).order_by(ErasureRequest.id.desc()))).all()
    return [{"employer": e.name, "requested_at": _time(r.created_at), "message": r.message,
             "decision": r.decision, "decided_at": _time(r.decided_at), "decision_reason": r.decision_reason}
            for r, e in rows]


@section("second_factors", "Double authentification")
async def second_factors(ctx: AccessContext) -> list[dict[str, Any]]:
    """The factors and how many recovery codes are left: never a secret, a public key or a code digest."""
    from convergences.mfa.models import RecoveryCode, SecondFactor

    factors = (await ctx.db.scalars(select(SecondFactor).where(SecondFactor.account_id == ctx.account.id)
                                    .order_by(SecondFactor.id))).all()
    kinds = {"totp": "Application d'authentification", "webauthn": "Clé d'accès"}
    items: list[dict[str, Any]] = [{"kind": kinds.get(f.kind, f.kind), "label": f.label or None,
                                    "created_at": _time(f.created_at), "last_used_at": _time(f.last_used_at)}
                                   for f in factors]
    left = await ctx.db.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.account_id == ctx.account.id, RecoveryCode.used_at.is_(None)))
    if left:
        items.append({"kind": "Codes de secours", "label": f"{left} code(s) inutilisé(s)", "created_at": None,
                      "last_used_at": None})
    return items


# -- the document and its derived forms ------------------------------------------------------------

FIELD_LABELS = {
    "given_name": "Prénom", "family_name": "Nom", "email": "Adresse électronique", "phone_contact": "Téléphone",
    "cig_admin": "Administrateur CIG", "correspondent": "Correspondant CIG", "created_at": "Créé le",
    "activated_at": "Activé le", "last_login_at": "Dernière connexion", "default_employer": "Employeur par défaut",
    "employer": "Employeur", "siret": "SIRET", "roles": "Rôles", "status": "Statut", "since": "Depuis le",
    "suspended_at": "Suspendu le", "application": "Application", "application_role": "Rôle applicatif",
    "client": "Client (application)", "claims": "Informations transmises", "opened_at": "Ouverte le",
    "last_seen_at": "Dernière activité", "expires_at": "Expire le", "ip": "Adresse IP", "user_agent": "Navigateur",
    "at": "Date", "action": "Action", "actor": "Auteur", "target": "Concerne", "before": "Avant", "after": "Après",
    "sent_at": "Envoyée le", "requested_at": "Demandée le", "message": "Message", "decision": "Décision",
    "decided_at": "Décidée le", "decision_reason": "Motif", "kind": "Type", "label": "Nom",
    "last_used_at": "Dernière utilisation",
}


async def build(db: AsyncSession, rt: Runtime, account: Account) -> dict[str, Any]:
    """The canonical document: every registered section, in order."""
    key_id = await db.scalar(select(AuditPersonKey.id).where(AuditPersonKey.account_id == account.id))
    ctx = AccessContext(db, rt, account, key_id)
    return {"generated_at": _time(utcnow()), "person": account.full_name,
            "sections": [{"key": s.key, "title": s.title, "items": await s.function(ctx)} for s in SECTIONS]}


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2, default=str)


def cell(value: Any) -> str:
    """A value as text (lists and objects as compact JSON)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def to_csv(document: dict[str, Any]) -> str:
    """One line per value: section, item number, field, value (semicolons, UTF-8 BOM, formulas neutralised)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(("Rubrique", "Élément", "Champ", "Valeur"))
    for part in document["sections"]:
        for number, item in enumerate(part["items"], 1):
            for name, value in item.items():
                writer.writerow([neutralise(v) for v in (part["title"], number, FIELD_LABELS.get(name, name),
                                                         cell(value))])
    return out.getvalue()
