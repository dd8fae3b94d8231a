"""Account (one person, one nominative login) and Invitation (signed, single-use, expiring)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, event, false
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from convergences.db import Base, CreatedAtMixin

if TYPE_CHECKING:
    from convergences.employers.models import Membership


class Account(CreatedAtMixin, Base):
    """Minimal personal data: names, professional email, and what authentication needs."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100))
    # Loaded only on demand: no page that lists accounts ever carries a hash.
    password_hash: Mapped[str | None] = deferred(mapped_column(String(255), default=None))
    is_cig_admin: Mapped[bool] = mapped_column(default=False)
    is_correspondent: Mapped[bool] = mapped_column(default=False)
    # Contact shown to the référents of the portfolio: CIG staff only, enforced at every write (below);
    # agents' second factors need no phone (docs/data-minimisation.md).
    phone_contact: Mapped[str | None] = mapped_column(String(30), default=None)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set by a second-factor reset: the person must enrol a new factor at next login, whatever the policy.
    mfa_enrolment_required: Mapped[bool] = mapped_column(default=False, server_default=false())
    activated_at: Mapped[datetime | None] = mapped_column(default=None)
    # The default employer the agent acts for (several memberships).
    default_employer_id: Mapped[int | None] = mapped_column(
        ForeignKey("employer.id", ondelete="SET NULL"), default=None)

    memberships: Mapped[list[Membership]] = relationship(back_populates="account",
                                                         cascade="all, delete-orphan")

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def status(self) -> str:
        return "active" if self.activated_at is not None else "invited"

    @property
    def is_staff(self) -> bool:
        return self.is_cig_admin or self.is_correspondent


class PhoneNotAllowed(ValueError):
    """A phone number on an account that is not CIG staff (data minimisation)."""


@event.listens_for(Account, "before_insert")
@event.listens_for(Account, "before_update")
def _phone_for_staff_only(mapper: object, connection: object, account: Account) -> None:
    if account.phone_contact and not account.is_staff:
        raise PhoneNotAllowed("Seul le personnel du CIG peut avoir un téléphone de contact.")


class Invitation(CreatedAtMixin, Base):
    """A one-time link: an invitation to set one's password, a password reset, or the confirmation of a
    new email address (``purpose``). The link signs ``id`` and ``nonce``; only a hash is kept."""

    __tablename__ = "invitation"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    employer_id: Mapped[int | None] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"),
                                                    default=None, index=True)
    nonce_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"),
                                                      default=None)
    # "invitation", "reset" or "email" (see convergences.accounts.links).
    purpose: Mapped[str] = mapped_column(String(20), default="invitation", server_default="invitation")
    # The address to confirm (purpose "email").
    new_email: Mapped[str | None] = mapped_column(String(254), default=None)
