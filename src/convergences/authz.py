"""The one place that answers "may this actor do this to that employer?".

Every service that reads or writes an employer's data calls :func:`require` (or filters with
:func:`employers_with`) before touching it. Views never decide authorization themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Permission(StrEnum):
    EMPLOYER_VIEW = "employer:view"
    ACCOUNTS_VIEW = "employer:accounts:view"
    ACCOUNTS_MANAGE = "employer:accounts:manage"
    GRANTS_MANAGE = "employer:grants:manage"
    INVITATIONS_RESEND = "employer:invitations:resend"
    REFERENTS_DESIGNATE = "employer:referents:designate"
    JOURNAL_VIEW = "employer:journal:view"
    MFA_RESET = "employer:mfa:reset"  # an agent's second factors
    MFA_RESET_ADMINS = "employer:mfa:reset-admins"  # a référent's or an autorité's second factors
    MFA_POLICY = "employer:mfa:policy"  # "2FA obligatoire pour tous les agents"
    # Help a member with their access: send a password reset link, clear a login throttle, end sessions.
    ACCOUNTS_SECURITY = "employer:accounts:security"
    # Global (CIG) permissions: not tied to one employer.
    EMPLOYERS_MANAGE = "cig:employers:manage"
    CATALOGUE_MANAGE = "cig:catalogue:manage"
    PORTFOLIOS_MANAGE = "cig:portfolios:manage"
    PROGRESS_VIEW = "cig:progress:view"
    CIG_JOURNAL_VIEW = "cig:journal:view"
    REVIEWS_MANAGE = "cig:reviews:manage"
    PROCESSING_RECORD_EXPORT = "cig:privacy:record"


P = Permission

# Roles an actor holds towards one employer, and what each role may do there.
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "agent": frozenset(),
    "referent": frozenset({P.EMPLOYER_VIEW, P.ACCOUNTS_VIEW, P.ACCOUNTS_MANAGE, P.GRANTS_MANAGE,
                           P.INVITATIONS_RESEND, P.JOURNAL_VIEW, P.MFA_RESET, P.MFA_POLICY, P.ACCOUNTS_SECURITY}),
    "authority": frozenset({P.EMPLOYER_VIEW, P.ACCOUNTS_VIEW, P.REFERENTS_DESIGNATE, P.JOURNAL_VIEW,
                            P.MFA_POLICY}),
    # The correspondent supports and helps, but does not run the employer's accounts and rights.
    "correspondent": frozenset({P.EMPLOYER_VIEW, P.ACCOUNTS_VIEW, P.INVITATIONS_RESEND,
                                P.REFERENTS_DESIGNATE, P.JOURNAL_VIEW, P.PROGRESS_VIEW, P.MFA_RESET,
                                P.MFA_RESET_ADMINS, P.ACCOUNTS_SECURITY}),
    "cig_admin": frozenset(Permission),
}

GLOBAL_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "cig_admin": frozenset(Permission),
    "correspondent": frozenset({P.PROGRESS_VIEW}),
}


class NotAuthorized(Exception):
    """The actor may not do this. Rendered as 403 (or 404 where existence must not leak)."""


@dataclass(frozen=True)
class Actor:
    """Who acts, built once per request from the login session."""

    account_id: int
    label: str
    email: str
    is_cig_admin: bool = False
    is_correspondent: bool = False
    # employer id -> roles held there through an active membership
    memberships: dict[int, frozenset[str]] = field(default_factory=dict)
    portfolio: frozenset[int] = frozenset()
    ip: str | None = None
    user_agent: str | None = None
    session_id: str | None = None

    @property
    def roles(self) -> set[str]:
        roles: set[str] = set()
        if self.is_cig_admin:
            roles.add("cig_admin")
        if self.is_correspondent:
            roles.add("correspondent")
        for held in self.memberships.values():
            roles |= held
        return roles

    def roles_at(self, employer_id: int) -> set[str]:
        roles = set(self.memberships.get(employer_id, ()))
        if self.is_cig_admin:
            roles.add("cig_admin")
        if self.is_correspondent and employer_id in self.portfolio:
            roles.add("correspondent")
        return roles

    def admin_employers(self) -> list[int]:
        """Employers where this actor is référent or autorité."""
        return sorted(e for e, r in self.memberships.items() if r & {"referent", "authority"})


def may(actor: Actor | None, permission: Permission, employer_id: int | None = None) -> bool:
    if actor is None:
        return False
    if employer_id is None:
        return any(permission in GLOBAL_PERMISSIONS.get(role, frozenset()) for role in actor.roles)
    return any(permission in ROLE_PERMISSIONS.get(role, frozenset()) for role in actor.roles_at(employer_id))


def require(actor: Actor | None, permission: Permission, employer_id: int | None = None) -> Actor:
    """Return the actor when allowed; raise NotAuthorized otherwise."""
    if actor is None or not may(actor, permission, employer_id):
        raise NotAuthorized(permission.value)
    return actor


def employers_with(actor: Actor, permission: Permission, candidates: Iterable[int]) -> list[int]:
    return [e for e in candidates if may(actor, permission, e)]
