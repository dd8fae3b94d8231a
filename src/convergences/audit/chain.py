"""The journal's hash chain: canonical form of an entry and its SHA-256 seal.

Pure functions (no database): the sealing hook in :mod:`convergences.audit.models`, the verifier in
:mod:`convergences.audit.services` and migration 0003's backfill all compute the same thing.

``hash = sha256(canonical JSON of the sealed fields, including seq and prev_hash)``, hex-encoded.
``actor_id`` is deliberately NOT sealed: it is a look-up pointer that the database itself sets to NULL
(``ON DELETE SET NULL``) when the account is deleted; the sealed ``actor_label`` copy is the evidence.
Everything else an auditor reads (when, who, what, about whom, in which employer, details, IP) is sealed.

Note for the erasure slice of issue 5 (pseudonymisation of journal entries): rewriting a sealed label
breaks the chain by design; that slice must re-seal deliberately (e.g. a documented re-chaining with an
entry recording the erasure) rather than update rows silently.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64

SEALED_FIELDS = ("seq", "prev_hash", "at", "actor_label", "employer_id", "application_id", "action",
                 "target_type", "target_id", "target_label", "before", "after", "ip")


def canonical_time(value: datetime) -> str:
    """Microsecond UTC timestamp: what both SQLite and PostgreSQL give back unchanged."""
    if value.tzinfo is None:  # SQLite hands naive UTC values back to raw SQL readers
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(fields: dict[str, Any]) -> bytes:
    """The canonical JSON of an entry's sealed fields (sorted keys, no whitespace, UTF-8)."""
    data = {name: fields.get(name) for name in SEALED_FIELDS}
    if isinstance(data["at"], datetime):
        data["at"] = canonical_time(data["at"])
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def seal(fields: dict[str, Any]) -> str:
    """The entry's hash (hex SHA-256 of :func:`canonical`; ``fields`` must hold seq and prev_hash)."""
    return hashlib.sha256(canonical(fields)).hexdigest()
