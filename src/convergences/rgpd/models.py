"""ErasureRequest: a person asks for the erasure of their account; the référents of one employer decide."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from convergences.db import Base, CreatedAtMixin


class ErasureRequest(CreatedAtMixin, Base):
    """One request per employer of the person: each employer's référents confirm (the person leaves that
    employer; the account is erased with its last membership) or refuse (with a reason shown to them).
    Deleted with the account (its text is the person's own data)."""

    __tablename__ = "rgpd_erasure_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decision: Mapped[str | None] = mapped_column(String(20), default=None)  # confirmed / refused
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"), default=None)
