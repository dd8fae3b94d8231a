"""The mail outbox: written in the same transaction as the change that sends it, delivered after."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from convergences.db import Base, CreatedAtMixin


class OutboxMail(CreatedAtMixin, Base):
    __tablename__ = "outbox_mail"

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(String(254), index=True)
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    # Due time of the next attempt (NULL: now); while a deliverer holds the lease it is the lease's end.
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    # Who holds the lease: only that deliverer records the outcome (convergences.leasing).
    lease_token: Mapped[str | None] = mapped_column(String(64), default=None)
