"""Access review campaigns: a campaign, the employers it covers, and each référent's decision per right."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from convergences.db import Base, CreatedAtMixin


class ReviewCampaign(CreatedAtMixin, Base):
    __tablename__ = "review_campaign"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    deadline: Mapped[datetime]
    opened_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"), default=None)

    scopes: Mapped[list[ReviewScope]] = relationship(back_populates="campaign", cascade="all, delete-orphan")


class ReviewScope(CreatedAtMixin, Base):
    """One employer in one campaign: its completion and the reminders already sent (once each)."""

    __tablename__ = "review_scope"
    __table_args__ = (UniqueConstraint("campaign_id", "employer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("review_campaign.id", ondelete="CASCADE"), index=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"), index=True)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_by_label: Mapped[str | None] = mapped_column(String(300), default=None)
    kept: Mapped[int] = mapped_column(default=0)
    revoked: Mapped[int] = mapped_column(default=0)
    reminded_opening_at: Mapped[datetime | None] = mapped_column(default=None)
    reminded_soon_at: Mapped[datetime | None] = mapped_column(default=None)
    reminded_late_at: Mapped[datetime | None] = mapped_column(default=None)

    campaign: Mapped[ReviewCampaign] = relationship(back_populates="scopes", lazy="joined")


class ReviewDecision(CreatedAtMixin, Base):
    """A référent's "Conserver" / "Retirer" on one right (membership × application) during a campaign.

    Kept after the grant is revoked (the certificate counts it); names are copied as in the journal."""

    __tablename__ = "review_decision"
    __table_args__ = (UniqueConstraint("scope_id", "membership_id", "application_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope_id: Mapped[int] = mapped_column(ForeignKey("review_scope.id", ondelete="CASCADE"), index=True)
    membership_id: Mapped[int] = mapped_column(ForeignKey("membership.id", ondelete="CASCADE"))
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    decision: Mapped[str] = mapped_column(String(10))  # keep / revoke
    role: Mapped[str | None] = mapped_column(String(60), default=None)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"), default=None)
