"""The journal's hash chain: canonical form of an entry, keyed commitments to its personal values, seals.

Pure functions (no database): the sealing hook in :mod:`convergences.audit.models`, the verifier in
:mod:`convergences.audit.services`, erasure (:mod:`convergences.rgpd.erasure`), the retention purge
(:mod:`convergences.audit.retention`) and migration 0006's re-sealing all compute the same thing.

Format 2 (migration 0006) — a chain that survives erasure and retention without re-sealing
-------------------------------------------------------------------------------------------
The RGPD asks for two things a plain hash chain forbids: erasing a person (art. 17) and dropping entries
past their retention period. Both are done without ever re-sealing an entry:

* **Keyed commitments (crypto-shredding).** Every person (account) who appears in the journal gets a
  random key in ``audit_person_key``. An entry's personal values are split in two parts: the *actor* part
  (``actor_label`` and, when there is an actor, ``ip``) keyed by the actor's key, and the *subject* part
  (``target_label``, the personal keys of ``before``/``after`` — see :data:`PERSONAL_DETAIL_KEYS` — and the
  ``ip`` of an entry without actor, e.g. a login) keyed by the key of the person the entry is about. The
  chain seals ``HMAC-SHA256(key, canonical part)`` (the *commitment*, stored in ``actor_commitment`` /
  ``subject_commitment``), never the raw values. Everything else (when, what, which employer and
  application, which right/role, ids) is sealed raw: the history of who had which right stays provable.
  While the key exists, ``audit verify`` recomputes the commitment from the raw values: any change of a
  name, email or IP is detected as before.
* **Erasure** replaces the raw personal values of the person's entries by a stable pseudonym
  ("Personne effacée n°7f3a…"), then deletes the key's secret (the row keeps the pseudonym and the
  erasure date). ``verify`` then checks that the entry carries exactly that pseudonym and still checks the
  sealed commitment, link and hash: the chain is intact, nothing is re-sealed, and the erased values can
  no longer be confirmed by anyone (no key left to test a guess against).
* **Retention purge** turns an entry into a *tombstone*: every content column is emptied and
  ``purged_at`` set, but ``seq``, ``prev_hash``, ``hash`` and ``content_digest`` stay. Because
  ``hash = sha256(seq, prev_hash, content_digest)`` and ``content_digest`` is the SHA-256 of the canonical
  content, ``verify`` still checks the link of a tombstone; it only can no longer check the content it
  no longer has. The chain head still catches the removal of the last entries.

``actor_id`` is deliberately not sealed: a look-up pointer the database sets to NULL when the account is
deleted. Format 1 (:func:`seal`, sealed raw values) is kept only for migration 0003, which 0006 re-seals.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64

# Keys of ``before``/``after`` that hold a person's own data (the rest — roles, status, application,
# reason… — is evidence of rights and is sealed raw).
# ``message`` is free text written about the person (e.g. the reason of a refused erasure request).
PERSONAL_DETAIL_KEYS = frozenset({"given_name", "family_name", "email", "name", "full_name", "phone",
                                  "phone_contact", "ip", "user_agent", "message"})

# Content sealed raw in format 2 (the personal parts are sealed through their commitments).
CONTENT_FIELDS = ("at", "employer_id", "application_id", "action", "target_type", "target_id")


def canonical_time(value: datetime) -> str:
    """Microsecond UTC timestamp: what both SQLite and PostgreSQL give back unchanged."""
    if value.tzinfo is None:  # SQLite hands naive UTC values back to raw SQL readers
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


# -- format 2 ----------------------------------------------------------------------------------------

def personal_details(details: dict[str, Any] | None) -> dict[str, Any] | None:
    if details is None:
        return None
    return {k: v for k, v in details.items() if k in PERSONAL_DETAIL_KEYS}


def public_details(details: dict[str, Any] | None) -> dict[str, Any] | None:
    if details is None:
        return None
    return {k: v for k, v in details.items() if k not in PERSONAL_DETAIL_KEYS}


def ip_owner(fields: dict[str, Any]) -> str:
    """Whose IP the entry's ``ip`` is: the actor's, else the subject's (a login), else nobody's key."""
    if fields.get("actor_key_id"):
        return "actor"
    if fields.get("subject_key_id"):
        return "subject"
    return ""


def actor_part(fields: dict[str, Any]) -> dict[str, Any]:
    return {"actor_label": fields.get("actor_label") or "",
            "ip": fields.get("ip") if ip_owner(fields) == "actor" else None}


def subject_part(fields: dict[str, Any]) -> dict[str, Any]:
    return {"target_label": fields.get("target_label") or "",
            "before": personal_details(fields.get("before")), "after": personal_details(fields.get("after")),
            "ip": fields.get("ip") if ip_owner(fields) == "subject" else None}


def commit(key: str, part: dict[str, Any]) -> str:
    """The keyed commitment to a personal part: HMAC-SHA256 with the person's key, hex."""
    return hmac.new(bytes.fromhex(key), _json(part), hashlib.sha256).hexdigest()


def content(fields: dict[str, Any]) -> dict[str, Any]:
    """What format 2 seals of an entry: raw non-personal content, commitments instead of personal parts."""
    data: dict[str, Any] = {name: fields.get(name) for name in CONTENT_FIELDS}
    if isinstance(data["at"], datetime):
        data["at"] = canonical_time(data["at"])
    actor_keyed, subject_keyed = bool(fields.get("actor_key_id")), bool(fields.get("subject_key_id"))
    data["actor"] = fields.get("actor_commitment") if actor_keyed else actor_part(fields)
    data["subject"] = fields.get("subject_commitment") if subject_keyed else subject_part(fields)
    data["before"] = public_details(fields.get("before")) if subject_keyed else fields.get("before")
    data["after"] = public_details(fields.get("after")) if subject_keyed else fields.get("after")
    if not ip_owner(fields):
        data["ip"] = fields.get("ip")
    return data


def content_digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(_json(content(fields))).hexdigest()


def link(seq: int, prev_hash: str, digest: str) -> str:
    """The entry's hash: chains its position, the previous hash and its content digest."""
    return hashlib.sha256(_json({"seq": seq, "prev_hash": prev_hash, "content": digest})).hexdigest()


def seal_entry(fields: dict[str, Any], seq: int, prev_hash: str, actor_key: tuple[int, str] | None,
               subject_key: tuple[int, str] | None) -> dict[str, Any]:
    """The chain columns of a new entry (format 2): key ids, commitments, content digest, hash."""
    fields = dict(fields)
    fields["actor_key_id"] = actor_key[0] if actor_key else None
    fields["subject_key_id"] = subject_key[0] if subject_key else None
    fields["actor_commitment"] = commit(actor_key[1], actor_part(fields)) if actor_key else None
    fields["subject_commitment"] = commit(subject_key[1], subject_part(fields)) if subject_key else None
    digest = content_digest(fields)
    return {"seq": seq, "prev_hash": prev_hash, "actor_key_id": fields["actor_key_id"],
            "subject_key_id": fields["subject_key_id"], "actor_commitment": fields["actor_commitment"],
            "subject_commitment": fields["subject_commitment"], "content_digest": digest,
            "hash": link(seq, prev_hash, digest)}


# -- format 1 (migration 0003 only) ------------------------------------------------------------------

SEALED_FIELDS = ("seq", "prev_hash", "at", "actor_label", "employer_id", "application_id", "action",
                 "target_type", "target_id", "target_label", "before", "after", "ip")


def canonical(fields: dict[str, Any]) -> bytes:
    """Format 1: the canonical JSON of an entry's raw sealed fields."""
    data = {name: fields.get(name) for name in SEALED_FIELDS}
    if isinstance(data["at"], datetime):
        data["at"] = canonical_time(data["at"])
    return _json(data)


def seal(fields: dict[str, Any]) -> str:
    """Format 1 hash (hex SHA-256 of :func:`canonical`), used by migration 0003 before 0006 re-seals."""
    return hashlib.sha256(canonical(fields)).hexdigest()


# -- erasure -----------------------------------------------------------------------------------------

def _replace_personal(details: dict[str, Any] | None, pseudonym: str) -> dict[str, Any] | None:
    if details is None:
        return None
    return {k: (pseudonym if k in PERSONAL_DETAIL_KEYS and v is not None else v) for k, v in details.items()}


def erased_actor_values(fields: dict[str, Any], pseudonym: str) -> dict[str, Any]:
    """The columns erasure writes in an entry whose actor is the erased person."""
    values: dict[str, Any] = {"actor_label": pseudonym}
    if ip_owner(fields) == "actor":
        values["ip"] = None
    return values


def erased_subject_values(fields: dict[str, Any], pseudonym: str) -> dict[str, Any]:
    """The columns erasure writes in an entry about the erased person."""
    values: dict[str, Any] = {"target_label": pseudonym,
                              "before": _replace_personal(fields.get("before"), pseudonym),
                              "after": _replace_personal(fields.get("after"), pseudonym)}
    if ip_owner(fields) == "subject":
        values["ip"] = None
    return values
