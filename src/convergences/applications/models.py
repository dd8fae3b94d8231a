"""Application (catalogue entry), Subscription (employer × application) and Grant (membership × application)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from convergences.db import Base, CreatedAtMixin

if TYPE_CHECKING:
    from convergences.employers.models import Employer, Membership


class Application(CreatedAtMixin, Base):
    __tablename__ = "application"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    launch_url: Mapped[str] = mapped_column(String(500))
    # Optional application roles: [{"code": "consultation", "label": "Consultation"}, …]
    roles: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    position: Mapped[int] = mapped_column(default=0)

    @property
    def role_codes(self) -> list[str]:
        return [r["code"] for r in self.roles]

    def role_label(self, code: str | None) -> str:
        for role in self.roles:
            if role["code"] == code:
                return str(role["label"])
        return code or ""


class Subscription(CreatedAtMixin, Base):
    __tablename__ = "subscription"
    __table_args__ = (UniqueConstraint("employer_id", "application_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"), index=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"),
                                                index=True)

    employer: Mapped[Employer] = relationship(back_populates="subscriptions")
    application: Mapped[Application] = relationship(lazy="joined")


class Grant(CreatedAtMixin, Base):
    __tablename__ = "grant"
    __table_args__ = (UniqueConstraint("membership_id", "application_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    membership_id: Mapped[int] = mapped_column(ForeignKey("membership.id", ondelete="CASCADE"),
                                               index=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"),
                                                index=True)
    role: Mapped[str | None] = mapped_column(String(60), default=None)

    membership: Mapped[Membership] = relationship(back_populates="grants")
    application: Mapped[Application] = relationship(lazy="joined")
