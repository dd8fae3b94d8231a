"""AuditEvent: the append-only, hash-chained journal of who did what.

Why the chain is sealed in a ``before_flush`` hook rather than in ``audit.record``: ``record`` is a
synchronous ``db.add`` called from many services (and soon from other packages); making it async would
touch every caller, and a forgotten ``await`` would silently drop an entry. The hook runs inside the
caller's transaction, at the flush that inserts the entries, so an entry and the change it records still
commit or roll back together, and no caller can write an entry that escapes the chain.

Concurrency: the hook first *writes* the one-row chain head (``audit_chain_head``), then reads it. On
PostgreSQL that UPDATE takes the row lock, held until commit: a concurrent appender waits, then reads the
head the first one committed (READ COMMITTED gives each statement a fresh snapshot). On SQLite the first
write of a transaction takes the database write lock (pysqlite only opens the transaction at the first
DML statement), so the head is again read under the lock. Either way two transactions cannot both chain
onto the same previous hash.

Append-only from the application: the same hook refuses to flush a modified or deleted AuditEvent.
The retention purge of issue 5 will be the only deletion path; it must drop the oldest entries and
record the new chain start (it will need a ``audit_chain_head``-like "first kept seq" and an exemption
here). No database trigger is installed: account deletion legitimately sets ``actor_id`` to NULL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DDL, JSON, BigInteger, ForeignKey, Index, Integer, String, event, inspect, select, update
from sqlalchemy.orm import Mapped, Session, UOWTransaction, mapped_column

from convergences.audit.chain import GENESIS, SEALED_FIELDS, seal
from convergences.db import Base, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_employer_at", "employer_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Position in the hash chain (1, 2, 3…), and the chain itself: see the module docstring.
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # A copy of the actor's label keeps history readable after the account is gone.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"),
                                                 default=None, index=True)
    actor_label: Mapped[str] = mapped_column(String(300), default="")
    employer_id: Mapped[int | None] = mapped_column(ForeignKey("employer.id", ondelete="SET NULL"),
                                                    default=None)
    # The application concerned (subscription, right, client…), for the journal's filter. Not a
    # foreign key: the journal outlives the catalogue entry.
    application_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    action: Mapped[str] = mapped_column(String(80), index=True)
    target_type: Mapped[str] = mapped_column(String(40), default="")
    target_id: Mapped[int | None] = mapped_column(default=None)
    target_label: Mapped[str] = mapped_column(String(300), default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)

    def sealed_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SEALED_FIELDS}


class AuditChainHead(Base):
    """The one row (id 1) holding the last seq and hash: the lock appenders queue on."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


# A database built from the models (tests, create_all) gets its head row like a migrated one.
event.listen(AuditChainHead.__table__, "after_create",
             DDL(f"INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, '{GENESIS}')"))  # noqa: S608 - a constant


class AppendOnlyViolation(RuntimeError):
    """Something tried to change or delete a journal entry."""


@event.listens_for(Session, "before_flush")
def _seal_new_events(session: Session, flush_context: UOWTransaction, instances: object) -> None:
    for obj in session.deleted:
        if isinstance(obj, AuditEvent):
            raise AppendOnlyViolation("Le journal ne peut pas être effacé.")
    for obj in session.dirty:
        if isinstance(obj, AuditEvent) and session.is_modified(obj, include_collections=False):
            raise AppendOnlyViolation("Une entrée du journal ne peut pas être modifiée.")
    pending = [obj for obj in session.new if isinstance(obj, AuditEvent) and obj.hash is None]
    if not pending:
        return
    pending.sort(key=lambda obj: inspect(obj).insert_order or 0)
    head = AuditChainHead.__table__
    connection = session.connection()
    # Write first (takes the lock), then read: see the module docstring.
    locked = connection.execute(update(head).where(head.c.id == 1).values(seq=head.c.seq))
    if not locked.rowcount:
        connection.execute(head.insert().values(id=1, seq=0, hash=GENESIS))
    seq, last = connection.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).one()
    for obj in pending:
        seq += 1
        # The column defaults would only apply at INSERT, after the seal: set them now.
        obj.at = obj.at or utcnow()
        obj.actor_label, obj.target_type = obj.actor_label or "", obj.target_type or ""
        obj.target_label = obj.target_label or ""
        obj.seq, obj.prev_hash = seq, last
        obj.hash = last = seal(obj.sealed_fields())
    connection.execute(update(head).where(head.c.id == 1).values(seq=seq, hash=last))
