"""Login sessions (our own, server-side) and login throttling counters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from convergences.db import Base, CreatedAtMixin


class LoginSession(CreatedAtMixin, Base):
    """A server-side session. ``id`` is the SHA-256 of the random token the cookie carries."""

    __tablename__ = "login_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    authenticated_at: Mapped[datetime]
    acting_employer_id: Mapped[int | None] = mapped_column(
        ForeignKey("employer.id", ondelete="SET NULL"), default=None)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(300), default=None)
    # Authentication methods of the last (re-)authentication, space-separated RFC 8176 values.
    amr: Mapped[str] = mapped_column(String(40), default="pwd", server_default="pwd")


class LoginThrottle(Base):
    """Consecutive failures for one key (``account:<email>``, ``pair:<email>|<address>`` or ``ip:<address>``)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime]
    blocked_until: Mapped[datetime | None] = mapped_column(default=None)
    # When the account's owner was warned of this burst of failures (once per burst).
    alerted_at: Mapped[datetime | None] = mapped_column(default=None)
