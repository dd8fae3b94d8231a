"""Format 2 of the journal chain (pure functions): keyed commitments instead of personal values, erasure
by crypto-shredding checked against the pseudonym, tombstones checked by their kept digest."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from convergences.audit.chain import (
    GENESIS,
    _json,
    content,
    erased_actor_values,
    erased_subject_values,
    link,
    seal_entry,
)
from convergences.audit.models import AuditEvent
from convergences.audit.services import TAMPERED, entry_problem

AT = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
ACTOR_KEY, SUBJECT_KEY = (1, "aa" * 32), (2, "bb" * 32)
PSEUDONYM = "Personne effacée n°7f3a0c21"


def fields(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"at": AT, "actor_label": "Léa Martin <l@x.fr>", "employer_id": 3, "application_id": 5,
                            "action": "account:update", "target_type": "membership", "target_id": 7,
                            "target_label": "Nora Lefèvre", "before": {"email": "n@x.fr", "roles": ["agent"]},
                            "after": {"email": "nora@x.fr", "roles": ["agent", "referent"]}, "ip": "10.0.0.1"}
    data.update(changes)
    return data


def entry(data: dict[str, Any], seq: int = 1, prev: str = GENESIS, actor: Any = ACTOR_KEY,
          subject: Any = SUBJECT_KEY) -> Any:
    sealed = seal_entry(data, seq, prev, actor, subject)
    values = {**data, **sealed, "purged_at": None, "actor_id": None}

    class Entry(SimpleNamespace):
        def sealed_fields(self) -> dict[str, Any]:
            return {name: getattr(self, name) for name in AuditEvent.CHAIN_FIELDS}

    return Entry(**values)


def keys(*, erased: bool = False) -> dict[int, Any]:
    return {1: SimpleNamespace(id=1, secret=ACTOR_KEY[1], pseudonym=None),
            2: SimpleNamespace(id=2, secret=None if erased else SUBJECT_KEY[1],
                               pseudonym=PSEUDONYM if erased else None)}


def test_keyed_content_holds_no_personal_value() -> None:
    sealed = seal_entry(fields(), 1, GENESIS, ACTOR_KEY, SUBJECT_KEY)
    text = _json(content({**fields(), **sealed})).decode()
    for value in ("Léa", "l@x.fr", "Nora", "n@x.fr", "10.0.0.1"):
        assert value not in text
    assert '"roles":["agent","referent"]' in text  # the rights stay sealed raw
    raw = _json(content(fields())).decode()  # nobody's key: everything raw (e.g. an employer entry)
    assert "Nora" in raw and "10.0.0.1" in raw


def test_every_sealed_part_changes_the_hash() -> None:
    base = seal_entry(fields(), 1, GENESIS, ACTOR_KEY, SUBJECT_KEY)["hash"]
    for change in ({"action": "grant:add"}, {"actor_label": "X"}, {"target_label": "Y"}, {"ip": "10.0.0.2"},
                   {"after": {"email": "nora@x.fr", "roles": ["agent"]}}, {"after": {"email": "z", "roles": [
                       "agent", "referent"]}}, {"employer_id": 4}, {"at": AT.replace(microsecond=1)}):
        assert seal_entry(fields(**change), 1, GENESIS, ACTOR_KEY, SUBJECT_KEY)["hash"] != base, change
    assert seal_entry(fields(), 2, GENESIS, ACTOR_KEY, SUBJECT_KEY)["hash"] != base
    assert seal_entry(fields(), 1, GENESIS, ACTOR_KEY, (2, "cc" * 32))["hash"] != base


def test_verification_with_keys_then_after_erasure() -> None:
    e = entry(fields())
    assert entry_problem(e, keys()) == ""
    e.target_label = "Quelqu'un d'autre"
    assert entry_problem(e, keys()) == TAMPERED
    # Erasure: the subject's values become the pseudonym and the key's secret is gone; nothing re-sealed.
    e = entry(fields())
    for name, value in erased_subject_values(e.sealed_fields(), PSEUDONYM).items():
        setattr(e, name, value)
    assert e.after == {"email": PSEUDONYM, "roles": ["agent", "referent"]}
    assert entry_problem(e, keys()) == TAMPERED  # with the key still there, the change is seen
    assert entry_problem(e, keys(erased=True)) == ""
    e.target_label = "Nora Lefèvre"
    assert "pseudonymisée" in entry_problem(e, keys(erased=True))
    assert erased_actor_values({**fields(), "actor_key_id": 1}, PSEUDONYM) == {"actor_label": PSEUDONYM, "ip": None}
    assert erased_actor_values(fields(), PSEUDONYM) == {"actor_label": PSEUDONYM}


def test_tombstones_keep_their_link_only() -> None:
    e = entry(fields())
    for name in ("actor_label", "target_label"):
        setattr(e, name, "")
    e.before = e.after = e.ip = e.target_id = None
    e.purged_at = AT
    assert entry_problem(e, keys()) == ""
    assert e.hash == link(1, GENESIS, e.content_digest)
    e.content_digest = "0" * 64
    assert entry_problem(e, keys()) == TAMPERED
    e = entry(fields())
    e.purged_at = AT
    assert "purgée" in entry_problem(e, keys())
