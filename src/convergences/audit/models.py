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

Append-only from the application: the same hook refuses to flush a modified or deleted AuditEvent, and a
``do_orm_execute`` guard refuses any UPDATE or DELETE statement on ``audit_event`` run through a session.
Exactly two paths are exempted, explicitly, by :func:`rewriting`: the retention purge (which turns
expired entries into tombstones) and erasure (which replaces a person's values by their pseudonym); see
:mod:`convergences.audit.chain` for why neither breaks the chain. DELETE is never allowed. No database
trigger is installed: account deletion legitimately sets ``actor_id`` to NULL.

Personal keys: the hook gives each person it meets (the actor, and the person an entry is about —
``target_type`` account, or membership/grant resolved to its account) a random key in
``audit_person_key`` and seals keyed commitments of their values (format 2, :mod:`convergences.audit.chain`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import DDL, JSON, BigInteger, ForeignKey, Index, Integer, String, event, inspect, select, update
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, UOWTransaction, mapped_column

from convergences.audit.chain import GENESIS, seal_entry
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
    # Not a foreign key (since 0006): the id is sealed, and deleting an employer must not make the
    # database rewrite sealed content (ON DELETE SET NULL would break the chain).
    employer_id: Mapped[int | None] = mapped_column(Integer, default=None)
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
    # Format 2 of the chain (see convergences.audit.chain): whose keys commit the personal parts, the
    # commitments, the digest of the sealed content (kept by tombstones), and the purge date.
    actor_key_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    subject_key_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    actor_commitment: Mapped[str | None] = mapped_column(String(64), default=None)
    subject_commitment: Mapped[str | None] = mapped_column(String(64), default=None)
    content_digest: Mapped[str] = mapped_column(String(64))
    purged_at: Mapped[datetime | None] = mapped_column(default=None)

    CHAIN_FIELDS = ("at", "actor_label", "employer_id", "application_id", "action", "target_type", "target_id",
                    "target_label", "before", "after", "ip", "actor_key_id", "subject_key_id",
                    "actor_commitment", "subject_commitment")

    def sealed_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.CHAIN_FIELDS}


class AuditPersonKey(Base):
    """A person's journal key (crypto-shredding). Erasure sets ``secret`` and ``account_id`` to NULL and
    keeps the pseudonym that replaced the person's values, so ``audit verify`` can still check them."""

    __tablename__ = "audit_person_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"),
                                                   default=None, unique=True)
    secret: Mapped[str | None] = mapped_column(String(64), default=None)
    pseudonym: Mapped[str | None] = mapped_column(String(80), default=None)
    erased_at: Mapped[datetime | None] = mapped_column(default=None)


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


REWRITE_REASONS = ("purge", "erasure")
_REWRITE = "convergences.audit.rewriting"


@contextmanager
def rewriting(session: Any, reason: str) -> Iterator[None]:
    """The only exemption from the append-only guard: UPDATE statements on ``audit_event`` by the
    retention purge (``"purge"``) or by erasure (``"erasure"``). Accepts a Session or an AsyncSession."""
    if reason not in REWRITE_REASONS:
        raise ValueError(reason)
    sync = getattr(session, "sync_session", session)
    sync.info[_REWRITE] = reason
    try:
        yield
    finally:
        sync.info.pop(_REWRITE, None)


@event.listens_for(Session, "do_orm_execute")
def _guard_statements(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) != AuditEvent.__tablename__:
        return
    if state.is_delete:
        raise AppendOnlyViolation("Le journal ne peut pas être effacé.")
    if state.session.info.get(_REWRITE) not in REWRITE_REASONS:
        raise AppendOnlyViolation("Une entrée du journal ne peut pas être modifiée.")


_DELETED_MEMBERSHIPS = "convergences.audit.deleted_memberships"


@event.listens_for(Session, "persistent_to_deleted")
def _remember_deleted_membership(session: Session, obj: object) -> None:
    # An entry about a membership deleted earlier in the transaction still belongs to its person.
    if type(obj).__name__ == "Membership":
        session.info.setdefault(_DELETED_MEMBERSHIPS, {})[obj.id] = obj.account_id  # type: ignore[attr-defined]


def _subject_account(obj: AuditEvent, memberships: dict[int, int]) -> int | None:
    if obj.target_id is None:
        return None
    if obj.target_type == "account":
        return obj.target_id
    if obj.target_type in ("membership", "grant"):
        return memberships.get(obj.target_id)
    return None


def person_keys(connection: Any, account_ids: set[int]) -> dict[int, tuple[int, str]]:
    """account id -> (key id, secret), creating the missing keys (called under the chain-head lock)."""
    keys_table = AuditPersonKey.__table__
    if not account_ids:
        return {}
    found = {row.account_id: (row.id, row.secret) for row in connection.execute(
        select(keys_table.c.id, keys_table.c.account_id, keys_table.c.secret)
        .where(keys_table.c.account_id.in_(account_ids)))}
    for account_id in sorted(account_ids - set(found)):
        secret = secrets.token_hex(32)
        key_id = connection.execute(keys_table.insert().values(account_id=account_id, secret=secret)
                                    ).inserted_primary_key[0]
        found[account_id] = (key_id, secret)
    return found


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
    memberships: dict[int, int] = dict(session.info.get(_DELETED_MEMBERSHIPS, {}))
    wanted = {obj.target_id for obj in pending if obj.target_type in ("membership", "grant") and obj.target_id}
    if wanted - set(memberships):
        from convergences.employers.models import Membership

        memberships.update(connection.execute(select(Membership.id, Membership.account_id)
                                              .where(Membership.id.in_(wanted - set(memberships)))).all())
    people = {p for obj in pending for p in (obj.actor_id, _subject_account(obj, memberships)) if p}
    keys = person_keys(connection, people)
    for obj in pending:
        seq += 1
        # The column defaults would only apply at INSERT, after the seal: set them now.
        obj.at = obj.at or utcnow()
        obj.actor_label, obj.target_type = obj.actor_label or "", obj.target_type or ""
        obj.target_label = obj.target_label or ""
        subject = _subject_account(obj, memberships)
        sealed = seal_entry(obj.sealed_fields(), seq, last, keys.get(obj.actor_id) if obj.actor_id else None,
                            keys.get(subject) if subject else None)
        for name, value in sealed.items():
            setattr(obj, name, value)
        last = obj.hash
    connection.execute(update(head).where(head.c.id == 1).values(seq=seq, hash=last))
