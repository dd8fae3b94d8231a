"""Writing, reading, filtering, exporting and verifying the journal. Writes happen in the caller's
transaction; the hash chain is sealed at flush time (see :mod:`convergences.audit.models`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.audit.actions import LABELS, Action
from convergences.audit.chain import (
    GENESIS,
    actor_part,
    commit,
    content_digest,
    erased_actor_values,
    erased_subject_values,
    link,
    subject_part,
)
from convergences.audit.models import AuditChainHead, AuditEvent, AuditPersonKey
from convergences.authz import Actor

PAGE_SIZE = 50
EXPORT_LIMIT = 100_000
PARIS = ZoneInfo("Europe/Paris")


def record(db: AsyncSession, actor: Actor | None, action: Action, *, employer_id: int | None = None,
           target_type: str = "", target_id: int | None = None, target_label: str = "",
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
           ip: str | None = None, application_id: int | None = None) -> AuditEvent:
    """Add one journal entry to the current transaction (it commits or rolls back with the change).

    Stays synchronous on purpose: the entry is chained at flush time by a session hook."""
    if application_id is None and target_type == "application":
        application_id = target_id
    event = AuditEvent(
        actor_id=actor.account_id if actor else None,
        actor_label=(actor.label if actor else "système")[:300],
        employer_id=employer_id, application_id=application_id, action=action.value, target_type=target_type,
        target_id=target_id, target_label=target_label[:300], before=before, after=after,
        ip=(actor.ip if actor else None) or ip,
    )
    db.add(event)
    return event


# -- reading ---------------------------------------------------------------------------------------

@dataclass
class JournalFilter:
    """The journal pages' filters, read from the query string (``du``, ``au``, ``auteur``, ``concerne``,
    ``action``, ``application``). Invalid values are ignored and reported in :attr:`errors`."""

    date_from: date | None = None
    date_to: date | None = None
    actor: str = ""
    target: str = ""
    action: str = ""
    application_id: int | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_query(cls, params: Mapping[str, Any]) -> JournalFilter:
        def value(name: str, limit: int = 100) -> str:
            raw = params.get(name, "")
            if isinstance(raw, list):
                raw = raw[-1] if raw else ""
            return str(raw).strip()[:limit]

        found = cls(actor=value("auteur"), target=value("concerne"))
        for name, attr in (("du", "date_from"), ("au", "date_to")):
            raw = value(name, 10)
            if raw:
                try:
                    setattr(found, attr, date.fromisoformat(raw))
                except ValueError:
                    found.errors[name] = "Date invalide (format attendu : AAAA-MM-JJ)."
        action = value("action", 80)
        if action:
            if action in LABELS:
                found.action = action
            else:
                found.errors["action"] = "Action inconnue."
        application = value("application", 12)
        if application:
            if application.isdigit():
                found.application_id = int(application)
            else:
                found.errors["application"] = "Application inconnue."
        return found

    @property
    def active(self) -> bool:
        return bool(self.date_from or self.date_to or self.actor or self.target or self.action
                    or self.application_id)

    def query_string(self) -> str:
        """The filter as query parameters (for the pager and the export link), without a leading '?'."""
        from urllib.parse import urlencode

        pairs = {"du": self.date_from.isoformat() if self.date_from else "",
                 "au": self.date_to.isoformat() if self.date_to else "", "auteur": self.actor,
                 "concerne": self.target, "action": self.action,
                 "application": str(self.application_id) if self.application_id else ""}
        return urlencode({k: v for k, v in pairs.items() if v})

    def apply(self, query: Select[tuple[AuditEvent]]) -> Select[tuple[AuditEvent]]:
        # Days are the CIG's days (Europe/Paris), as the dates shown on the page.
        if self.date_from:
            query = query.where(AuditEvent.at >= datetime.combine(self.date_from, time(), PARIS))
        if self.date_to:
            query = query.where(AuditEvent.at < datetime.combine(self.date_to + timedelta(days=1), time(), PARIS))
        if self.actor:
            query = query.where(func.lower(AuditEvent.actor_label).like(_contains(self.actor), escape="\\"))
        if self.target:
            query = query.where(func.lower(AuditEvent.target_label).like(_contains(self.target), escape="\\"))
        if self.action:
            query = query.where(AuditEvent.action == self.action)
        if self.application_id:
            query = query.where(AuditEvent.application_id == self.application_id)
        return query


def _contains(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _newest_first(query: Select[tuple[AuditEvent]]) -> Select[tuple[AuditEvent]]:
    return query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())


@dataclass
class JournalPage:
    """One page of a filtered journal, with what the filter form offers."""

    events: list[AuditEvent]
    total: int
    applications: list[Any]


async def filtered_page(db: AsyncSession, query: Select[tuple[AuditEvent]], filters: JournalFilter,
                        number: int) -> JournalPage:
    events, total = await page(db, filters.apply(query), number)
    return JournalPage(events, total, await application_choices(db, query))


async def page(db: AsyncSession, query: Select[tuple[AuditEvent]], number: int) -> tuple[list[AuditEvent], int]:
    total = await db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = (await db.scalars(_newest_first(query).limit(PAGE_SIZE)
                             .offset(max(number - 1, 0) * PAGE_SIZE))).all()
    return list(rows), int(total)


def for_employer(employer_id: int) -> Select[tuple[AuditEvent]]:
    return select(AuditEvent).where(AuditEvent.employer_id == employer_id)


def for_employers(employer_ids: list[int]) -> Select[tuple[AuditEvent]]:
    return select(AuditEvent).where(AuditEvent.employer_id.in_(employer_ids))


def everything() -> Select[tuple[AuditEvent]]:
    """Every readable entry (tombstones of purged entries have no content to show)."""
    return select(AuditEvent).where(AuditEvent.purged_at.is_(None))


# -- CSV export ------------------------------------------------------------------------------------

CSV_HEADER = ("Date", "Auteur", "Action", "Code de l'action", "Employeur", "Application", "Concerne",
              "Détail avant", "Détail après", "Adresse IP", "Numéro d'entrée")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP: prefix with an apostrophe)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


async def export_rows(db: AsyncSession, query: Select[tuple[AuditEvent]]) -> list[AuditEvent]:
    return list((await db.scalars(_newest_first(query).limit(EXPORT_LIMIT))).all())


def to_csv(events: Iterable[AuditEvent], employers: Mapping[int, str], applications: Mapping[int, str]) -> str:
    """The journal as CSV (semicolon-separated, as French spreadsheets expect; UTF-8 with BOM)."""
    import json

    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for e in events:
        writer.writerow([neutralise(v) for v in (
            e.at.astimezone(PARIS).strftime("%d/%m/%Y %H:%M:%S"), e.actor_label.split(" <")[0],
            LABELS.get(e.action, e.action), e.action, employers.get(e.employer_id or 0, ""),
            applications.get(e.application_id or 0, ""), e.target_label,
            json.dumps(e.before, ensure_ascii=False, sort_keys=True) if e.before else "",
            json.dumps(e.after, ensure_ascii=False, sort_keys=True) if e.after else "", e.ip or "", e.id)])
    return out.getvalue()


async def export(db: AsyncSession, query: Select[tuple[AuditEvent]], filters: JournalFilter) -> str:
    """The filtered entries of ``query`` as CSV.

    The export is a GET and, like every GET of the portal, changes nothing: it is not itself journaled
    (the access log has it; the tenant-isolation walk checks that GETs leave the database untouched)."""
    from convergences.applications.models import Application
    from convergences.employers.models import Employer

    events = await export_rows(db, filters.apply(query))
    employer_ids = {e.employer_id for e in events if e.employer_id}
    employers = dict((await db.execute(select(Employer.id, Employer.name)
                                       .where(Employer.id.in_(employer_ids)))).all())
    application_ids = {e.application_id for e in events if e.application_id}
    applications = dict((await db.execute(select(Application.id, Application.name)
                                          .where(Application.id.in_(application_ids)))).all())
    return to_csv(events, employers, applications)


async def application_choices(db: AsyncSession, scope: Select[tuple[AuditEvent]]) -> list[Any]:
    """The applications named in the journal ``scope``, for its application filter: a référent is
    not told which other applications exist elsewhere."""
    from convergences.applications.models import Application

    named = (scope.with_only_columns(AuditEvent.application_id)
             .where(AuditEvent.application_id.is_not(None)).distinct())
    return list((await db.execute(select(Application.id, Application.name).where(Application.id.in_(named))
                                  .order_by(Application.name))).all())


def action_choices() -> list[tuple[str, str]]:
    return sorted(LABELS.items(), key=lambda item: item[1])


# -- verification ----------------------------------------------------------------------------------

@dataclass
class ChainReport:
    """The result of :func:`verify`: ``broken_id`` is the first entry whose link fails (None if intact)."""

    checked: int = 0
    broken_id: int | None = None
    broken_seq: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return not self.problem


async def verify(db: AsyncSession, batch: int = 1000) -> ChainReport:
    """Recompute the chain from the first entry; stop at the first broken link (format 2, see
    :mod:`convergences.audit.chain`: commitments checked while the person's key exists, the pseudonym
    once erased; tombstones checked by their kept content digest)."""
    report = ChainReport()
    expected_seq, previous = 1, GENESIS
    last_seq = 0
    while True:
        events = (await db.scalars(select(AuditEvent).where(AuditEvent.seq > last_seq)
                                   .order_by(AuditEvent.seq).limit(batch))).all()
        if not events:
            break
        key_ids = {k for e in events for k in (e.actor_key_id, e.subject_key_id) if k}
        keys = {k.id: k for k in (await db.scalars(select(AuditPersonKey).where(AuditPersonKey.id.in_(key_ids))))}
        for e in events:
            problem = ""
            if e.seq != expected_seq:
                problem = (f"entrée(s) manquante(s) : séquence {expected_seq} attendue, "
                           f"{e.seq} trouvée")
            elif e.prev_hash != previous:
                problem = "le lien vers l'entrée précédente ne correspond pas"
            else:
                problem = entry_problem(e, keys)
            if problem:
                report.broken_id, report.broken_seq, report.problem = e.id, e.seq, problem
                return report
            report.checked += 1
            expected_seq, previous, last_seq = e.seq + 1, e.hash, e.seq
        db.expunge_all()
    # Entries without a place in the chain, and the head (which catches the removal of the last entries).
    unsealed = await db.scalar(select(AuditEvent.id).where(or_(AuditEvent.seq.is_(None), AuditEvent.hash.is_(None)))
                               .order_by(AuditEvent.id).limit(1))
    if unsealed is not None:
        report.broken_id, report.problem = unsealed, "entrée hors de la chaîne (non scellée)"
        return report
    head = await db.get(AuditChainHead, 1)
    if head is not None and (head.seq, head.hash) != (last_seq, previous):
        report.broken_seq = head.seq
        report.problem = (f"la tête de chaîne annonce {head.seq} entrée(s), {last_seq} trouvée(s) : "
                          "des entrées récentes ont été supprimées")
    return report


TAMPERED = "le contenu de l'entrée a été modifié"


def entry_problem(e: AuditEvent, keys: Mapping[int, AuditPersonKey]) -> str:
    """What is wrong with one entry's content and hash ("" if nothing); its link is checked by the caller."""
    if e.purged_at is not None:
        if e.actor_label or e.target_label or e.before or e.after or e.ip or e.target_id or e.actor_id:
            return "une entrée purgée contient encore des données"
        return "" if e.hash == link(e.seq, e.prev_hash, e.content_digest) else TAMPERED
    fields = e.sealed_fields()
    for side, part, erased in (("actor", actor_part, erased_actor_values),
                               ("subject", subject_part, erased_subject_values)):
        key_id = fields[f"{side}_key_id"]
        if not key_id:
            continue
        key = keys.get(key_id)
        if key is None:
            return "la clé personnelle d'une entrée est introuvable"
        if key.secret is not None:
            if commit(key.secret, part(fields)) != fields[f"{side}_commitment"]:
                return TAMPERED
        elif part(fields) != part({**fields, **erased(fields, key.pseudonym or "")}):
            return "une donnée effacée (pseudonymisée) a été modifiée"
    digest = content_digest(fields)
    if digest != e.content_digest or e.hash != link(e.seq, e.prev_hash, digest):
        return TAMPERED
    return ""
