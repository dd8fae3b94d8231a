"""The journal's hash chain (canonical form, seal), the CSV neutralisation and the filter parsing:
pure functions, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from convergences.audit.chain import GENESIS, SEALED_FIELDS, canonical, seal
from convergences.audit.services import JournalFilter, neutralise, to_csv

AT = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def entry(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {"seq": 1, "prev_hash": GENESIS, "at": AT, "actor_label": "Léa Martin <l@x.fr>",
                                 "employer_id": 3, "application_id": None, "action": "grant:add",
                                 "target_type": "grant", "target_id": 7, "target_label": "Nora — BIP",
                                 "before": None, "after": {"role": None, "application": "bip"}, "ip": "10.0.0.1"}
    fields.update(changes)
    return fields


def test_seal_is_a_sha256_hex_and_deterministic() -> None:
    digest = seal(entry())
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert seal(entry()) == digest
    # Key order of the details and the time zone of the timestamp do not change the seal.
    assert seal(entry(after={"application": "bip", "role": None})) == digest
    assert seal(entry(at=AT.astimezone(timezone(timedelta(hours=2))))) == digest
    # SQLite hands naive UTC back to raw readers: the same instant.
    assert seal(entry(at=AT.replace(tzinfo=None))) == digest


@pytest.mark.parametrize("field", [f for f in SEALED_FIELDS if f not in ("at",)])
def test_every_sealed_field_changes_the_seal(field: str) -> None:
    original = entry()
    value = original[field]
    changed = {"seq": 2, "prev_hash": "f" * 64, "employer_id": 4, "application_id": 9, "target_id": 8,
               "before": {"role": "x"}, "after": {"role": "admin"}}.get(field, f"{value}!")
    assert seal(entry(**{field: changed})) != seal(original)


def test_time_and_unsealed_fields() -> None:
    assert seal(entry(at=AT + timedelta(microseconds=1))) != seal(entry())
    # actor_id is a pointer the database nulls when the account is deleted: it is not sealed.
    assert seal({**entry(), "actor_id": 5}) == seal({**entry(), "actor_id": None})
    assert b'"at":"2026-03-01T12:30:15.123456Z"' in canonical(entry())


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://x\",\"clic\")", "+SUM(1)", "-2+3", "@cmd", "\tx", "\rx"])
def test_formula_cells_get_an_apostrophe(value: str) -> None:
    assert neutralise(value) == "'" + value


@pytest.mark.parametrize("value", ["Nora Lefèvre", "", "12", "a=b", None])
def test_ordinary_cells_are_unchanged(value: str | None) -> None:
    assert neutralise(value) == (value or "")


def test_csv_rows_are_neutralised() -> None:
    event = SimpleNamespace(at=AT, actor_label="=evil <x@y.fr>", action="account:create", employer_id=1,
                            application_id=None, target_label="=cmd|' /C calc'!A0", before=None,
                            after={"given_name": "=cmd"}, ip="-1", id=42)
    body = to_csv([event], {1: "+Mairie"}, {})  # type: ignore[list-item]
    line = body.splitlines()[1]
    cells = line.split(";")
    assert cells[1] == "'=evil" and cells[4] == "'+Mairie" and cells[9] == "'-1"
    assert "'=cmd|' /C calc'!A0" in line
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)


def test_filter_parsing() -> None:
    found = JournalFilter.from_query({"du": "2026-01-02", "au": "pas une date", "auteur": " Léa ",
                                      "concerne": "Nora", "action": "grant:add", "application": "3"})
    assert found.date_from == date(2026, 1, 2) and found.date_to is None and "au" in found.errors
    assert (found.actor, found.target, found.action, found.application_id) == ("Léa", "Nora", "grant:add", 3)
    assert found.active
    assert "du=2026-01-02" in found.query_string() and "auteur=L%C3%A9a" in found.query_string()
    unknown = JournalFilter.from_query({"action": "drop table", "application": "x"})
    assert unknown.action == "" and unknown.application_id is None and set(unknown.errors) == {"action",
                                                                                                "application"}
    assert not JournalFilter.from_query({}).active and JournalFilter.from_query({}).query_string() == ""
