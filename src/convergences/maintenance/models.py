"""What the inactivity job remembers: when a person was last warned (once per inactivity period)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from convergences.db import Base


class InactivityWarning(Base):
    """The last inactivity warning sent to an account. A login after ``warned_at`` opens a new period."""

    __tablename__ = "inactivity_warning"

    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), primary_key=True)
    warned_at: Mapped[datetime]
