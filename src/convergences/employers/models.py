"""Employer (the tenant), Membership (account × employer, with its roles) and the CIG portfolios."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from convergences.db import Base, CreatedAtMixin

if TYPE_CHECKING:
    from convergences.accounts.models import Account
    from convergences.applications.models import Grant, Subscription

EMPLOYER_KINDS: dict[str, str] = {
    "commune": "Commune",
    "ccas": "CCAS / CIAS",
    "epci": "EPCI (communauté, métropole…)",
    "syndicat": "Syndicat intercommunal ou mixte",
    "departement": "Département",
    "etablissement": "Autre établissement public",
}


class Employer(CreatedAtMixin, Base):
    __tablename__ = "employer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    siret: Mapped[str] = mapped_column(String(14), unique=True)
    kind: Mapped[str] = mapped_column(String(30))
    # "2FA obligatoire pour tous les agents" (référents and autorités always need it).
    mfa_required_for_agents: Mapped[bool] = mapped_column(default=False, server_default=false())

    memberships: Mapped[list[Membership]] = relationship(back_populates="employer",
                                                         cascade="all, delete-orphan")
    subscriptions: Mapped[list[Subscription]] = relationship(back_populates="employer",
                                                             cascade="all, delete-orphan")

    @property
    def kind_label(self) -> str:
        return EMPLOYER_KINDS.get(self.kind, self.kind)


class Membership(CreatedAtMixin, Base):
    """An account serving an employer. Every membership is an agent; flags add the admin roles.

    Suspension is per membership: a secretary shared by two communes suspended by one keeps the other.
    """

    __tablename__ = "membership"
    __table_args__ = (UniqueConstraint("account_id", "employer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"), index=True)
    is_referent: Mapped[bool] = mapped_column(default=False)
    is_authority: Mapped[bool] = mapped_column(default=False)
    suspended_at: Mapped[datetime | None] = mapped_column(default=None)

    account: Mapped[Account] = relationship(back_populates="memberships", lazy="joined")
    employer: Mapped[Employer] = relationship(back_populates="memberships")
    grants: Mapped[list[Grant]] = relationship(back_populates="membership", cascade="all, delete-orphan")

    @property
    def roles(self) -> list[str]:
        roles = ["agent"]
        if self.is_referent:
            roles.append("referent")
        if self.is_authority:
            roles.append("authority")
        return roles

    @property
    def status(self) -> str:
        """invited / active / suspended, as shown in the grid."""
        if self.suspended_at is not None:
            return "suspended"
        return self.account.status


class PortfolioEntry(CreatedAtMixin, Base):
    """A CIG correspondent supports this employer."""

    __tablename__ = "portfolio_entry"
    __table_args__ = (UniqueConstraint("correspondent_id", "employer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    correspondent_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"), index=True)
