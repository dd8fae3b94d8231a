"""Access review campaigns: the CIG opens one, each employer's référents keep or revoke every right, then
sign it off (a completion certificate in the journal). Reminders go out from ``convergences maintenance``.

Every employer-level method checks ``authz.require(actor, GRANTS_MANAGE | EMPLOYER_VIEW, employer_id)``
first and finds the campaign only through that employer's own scope row (no campaign of another
employer can be reached by its id). Staff listings are filtered through ``authz.may``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.accounts.models import Account
from convergences.applications.models import Application, Grant
from convergences.audit import services as audit
from convergences.audit.actions import Action
from convergences.authz import Actor, Permission, may, require
from convergences.db import transaction, utcnow
from convergences.employers.models import Employer, Membership
from convergences.errors import FormInvalid, NotFound, ServiceError
from convergences.oidc.services import kick_logouts
from convergences.reviews.models import ReviewCampaign, ReviewDecision, ReviewScope
from convergences.runtime import Runtime

P = Permission
PARIS = ZoneInfo("Europe/Paris")
KEEP, REVOKE = "keep", "revoke"
DECISION_LABELS = {KEEP: "Conservé", REVOKE: "Retiré"}
PAGE_SIZE = 100


@dataclass
class ReviewLine:
    membership: Membership
    application: Application
    role: str | None
    decision: str | None = None

    @property
    def key(self) -> str:
        return f"{self.membership.id}-{self.application.id}"


@dataclass
class Progress:
    total: int = 0
    kept: int = 0
    revoked: int = 0

    @property
    def decided(self) -> int:
        return self.kept + self.revoked

    @property
    def percent(self) -> int:
        return 100 if not self.total else (100 * self.decided) // self.total


@dataclass
class ReviewSheet:
    campaign: ReviewCampaign
    scope: ReviewScope
    employer: Employer
    lines: list[ReviewLine]
    progress: Progress
    page: int = 1
    pages: int = 1


@dataclass
class ScopeStatus:
    employer: Employer
    scope: ReviewScope
    progress: Progress

    @property
    def status(self) -> str:
        if self.scope.completed_at is not None:
            return "completed"
        return "in_progress" if self.progress.decided else "not_started"


@dataclass
class CampaignInput:
    name: str
    deadline: str
    employer_ids: list[int] = field(default_factory=list)
    all_employers: bool = True

    def validate(self, today: date) -> tuple[dict[str, str], datetime | None]:
        errors: dict[str, str] = {}
        if len(self.name.strip()) < 3:
            errors["name"] = "Donnez un nom à la campagne (au moins 3 caractères), par exemple « Revue T1 2027 »."
        deadline = None
        try:
            day = date.fromisoformat(self.deadline.strip())
        except ValueError:
            errors["deadline"] = "Date invalide (format attendu : AAAA-MM-JJ)."
        else:
            if day <= today:
                errors["deadline"] = "L'échéance doit être postérieure à aujourd'hui."
            else:
                # The deadline is the end of that day for the CIG (Europe/Paris).
                deadline = datetime.combine(day, time(23, 59, 59), PARIS)
        if not self.all_employers and not self.employer_ids:
            errors["employers"] = "Choisissez au moins un employeur, ou « tous les employeurs »."
        return errors, deadline


async def _progress(db: AsyncSession, scopes: list[ReviewScope]) -> dict[int, Progress]:
    """Per scope: rights to review (current grants + rights revoked by the review) and decisions, in
    three grouped queries (no query per employer)."""
    if not scopes:
        return {}
    found = {s.id: Progress() for s in scopes}
    employer_ids = {s.employer_id for s in scopes}
    grants = dict((await db.execute(select(Membership.employer_id, func.count()).join(
        Grant, Grant.membership_id == Membership.id).where(Membership.employer_id.in_(employer_ids))
        .group_by(Membership.employer_id))).all())
    # A "keep" counts while its grant lives; a "revoke" while it stays revoked (re-granted from the agents
    # grid, the right is to be reviewed again).
    live = select(Grant.id).where(Grant.membership_id == ReviewDecision.membership_id,
                                  Grant.application_id == ReviewDecision.application_id).exists()
    decisions = (await db.execute(select(ReviewDecision.scope_id, ReviewDecision.decision, func.count()).where(
        ReviewDecision.scope_id.in_(found),
        ((ReviewDecision.decision == KEEP) & live) | ((ReviewDecision.decision == REVOKE) & ~live))
        .group_by(ReviewDecision.scope_id, ReviewDecision.decision))).all()
    for scope in scopes:
        progress = found[scope.id]
        if scope.completed_at is not None:
            # Frozen at completion: the certificate's figures.
            progress.kept, progress.revoked = scope.kept, scope.revoked
            progress.total = scope.kept + scope.revoked
            continue
        progress.total = int(grants.get(scope.employer_id, 0))
    by_id = {s.id: s for s in scopes}
    for scope_id, decision, count in decisions:
        progress = found[scope_id]
        if by_id[scope_id].completed_at is not None:
            continue
        if decision == KEEP:
            progress.kept = int(count)
        else:
            progress.revoked = int(count)
            progress.total += int(count)  # revoked rights are no longer grants but stay review lines
    return found


class ReviewService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # -- CIG ---------------------------------------------------------------------------------------

    async def open_campaign(self, actor: Actor, data: CampaignInput, *, now: datetime | None = None) -> ReviewCampaign:
        """Open a campaign for every employer or a selection. Raises NotAuthorized, FormInvalid."""
        require(actor, P.REVIEWS_MANAGE)
        now = now or utcnow()
        errors, deadline = data.validate(now.astimezone(PARIS).date())
        if errors:
            raise FormInvalid(errors)
        assert deadline is not None
        async with transaction(self.rt.maker) as db:
            query = select(Employer.id).order_by(Employer.name)
            if not data.all_employers:
                query = query.where(Employer.id.in_(data.employer_ids))
            employer_ids = list((await db.scalars(query)).all())
            if not employer_ids:
                raise FormInvalid({"employers": "Aucun employeur ne correspond à cette sélection."})
            campaign = ReviewCampaign(name=data.name.strip()[:200], deadline=deadline, opened_by_id=actor.account_id)
            db.add(campaign)
            await db.flush()
            db.add_all(ReviewScope(campaign_id=campaign.id, employer_id=e) for e in employer_ids)
            audit.record(db, actor, Action.REVIEW_OPEN, target_type="review_campaign", target_id=campaign.id,
                         target_label=campaign.name, after={"echeance": deadline.date().isoformat(),
                                                            "employeurs": len(employer_ids)})
            return campaign

    async def employers_for_form(self, actor: Actor) -> list[Employer]:
        require(actor, P.REVIEWS_MANAGE)
        async with transaction(self.rt.maker) as db:
            return list((await db.scalars(select(Employer).order_by(Employer.name))).all())

    async def campaigns(self, actor: Actor) -> list[tuple[ReviewCampaign, int, int]]:
        """Campaigns touching the actor's scope (CIG admin: all; correspondent: their portfolio), with
        (completed, total) employers of that scope. Raises NotAuthorized."""
        require(actor, P.PROGRESS_VIEW)
        async with transaction(self.rt.maker) as db:
            scopes = (await db.scalars(select(ReviewScope).order_by(ReviewScope.campaign_id))).all()
            counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
            campaigns: dict[int, ReviewCampaign] = {}
            for scope in scopes:
                if not may(actor, P.EMPLOYER_VIEW, scope.employer_id):
                    continue
                campaigns[scope.campaign_id] = scope.campaign
                counts[scope.campaign_id][1] += 1
                counts[scope.campaign_id][0] += scope.completed_at is not None
            return [(c, *counts[c.id]) for c in sorted(campaigns.values(), key=lambda c: c.deadline, reverse=True)]

    async def progress(self, actor: Actor, campaign_id: int) -> tuple[ReviewCampaign, list[ScopeStatus]]:
        """Per employer of the actor's scope: not started / in progress x % / completed. Raises
        NotAuthorized, NotFound (also when the campaign covers none of the actor's employers)."""
        require(actor, P.PROGRESS_VIEW)
        async with transaction(self.rt.maker) as db:
            rows = [(s, e) for s, e in (await db.execute(select(ReviewScope, Employer).join(
                Employer, Employer.id == ReviewScope.employer_id).where(ReviewScope.campaign_id == campaign_id)
                .order_by(Employer.name))).all() if may(actor, P.EMPLOYER_VIEW, e.id)]
            if not rows:
                raise NotFound()
            progress = await _progress(db, [s for s, _ in rows])
            return rows[0][0].campaign, [ScopeStatus(e, s, progress[s.id]) for s, e in rows]

    # -- the employer's référents ------------------------------------------------------------------

    async def employer_reviews(self, actor: Actor, employer_id: int) -> tuple[Employer, list[ScopeStatus]]:
        """The campaigns covering this employer, newest first. Raises NotAuthorized, NotFound."""
        require(actor, P.GRANTS_MANAGE, employer_id)
        async with transaction(self.rt.maker) as db:
            employer = await db.get(Employer, employer_id)
            if employer is None:
                raise NotFound()
            scopes = list((await db.scalars(select(ReviewScope).join(ReviewCampaign).where(
                ReviewScope.employer_id == employer_id).order_by(ReviewCampaign.deadline.desc()))).all())
            progress = await _progress(db, scopes)
            return employer, [ScopeStatus(employer, s, progress[s.id]) for s in scopes]

    async def _scope(self, db: AsyncSession, employer_id: int, campaign_id: int) -> tuple[ReviewScope, Employer]:
        row = (await db.execute(select(ReviewScope, Employer).join(Employer, Employer.id == ReviewScope.employer_id)
                                .where(ReviewScope.employer_id == employer_id,
                                       ReviewScope.campaign_id == campaign_id))).first()
        if row is None:
            raise NotFound()
        return row[0], row[1]

    async def _lines(self, db: AsyncSession, scope: ReviewScope, page: int | None = None,
                     only: tuple[int, int] | None = None) -> tuple[list[ReviewLine], int]:
        decisions = {(d.membership_id, d.application_id): d for d in (await db.scalars(select(ReviewDecision).where(
            ReviewDecision.scope_id == scope.id))).all()}
        query = (select(Grant, Membership, Application).join(Membership, Membership.id == Grant.membership_id)
                 .join(Account, Account.id == Membership.account_id)
                 .join(Application, Application.id == Grant.application_id)
                 .where(Membership.employer_id == scope.employer_id))
        revoked = select(ReviewDecision.membership_id, ReviewDecision.application_id).where(
            ReviewDecision.scope_id == scope.id, ReviewDecision.decision == REVOKE)
        if only is not None:
            query = query.where(Grant.membership_id == only[0], Grant.application_id == only[1])
            revoked = revoked.where(ReviewDecision.membership_id == only[0], ReviewDecision.application_id == only[1])
        lines: list[ReviewLine] = []
        for g, m, a in (await db.execute(query)).all():
            decision = decisions.get((m.id, a.id))
            lines.append(ReviewLine(m, a, g.role, decision.decision if decision and decision.decision == KEEP
                                    else None))
        # Rights the review revoked stay on the sheet, marked "Retiré" (unless granted again since).
        live = {(line.membership.id, line.application.id) for line in lines}
        gone = [(mid, aid) for mid, aid in (await db.execute(revoked)).all() if (mid, aid) not in live]
        if gone:
            memberships = {m.id: m for m in (await db.scalars(select(Membership).where(
                Membership.id.in_({mid for mid, _ in gone})))).all()}
            applications = {a.id: a for a in (await db.scalars(select(Application).where(
                Application.id.in_({aid for _, aid in gone})))).all()}
            lines += [ReviewLine(memberships[mid], applications[aid], decisions[(mid, aid)].role, REVOKE)
                      for mid, aid in gone if mid in memberships and aid in applications]
        lines.sort(key=lambda line: (line.membership.account.family_name.lower(),
                                     line.membership.account.given_name.lower(), line.membership.id,
                                     line.application.position, line.application.name))
        pages = max(1, -(-len(lines) // PAGE_SIZE))
        if page is not None:
            page = min(max(page, 1), pages)
            lines = lines[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        return lines, pages

    async def sheet(self, actor: Actor, employer_id: int, campaign_id: int, page: int = 1) -> ReviewSheet:
        """The référent's review page: every agent × right of the employer. Raises NotAuthorized, NotFound."""
        require(actor, P.GRANTS_MANAGE, employer_id)
        async with transaction(self.rt.maker) as db:
            scope, employer = await self._scope(db, employer_id, campaign_id)
            lines, pages = await self._lines(db, scope, page)
            progress = (await _progress(db, [scope]))[scope.id]
            return ReviewSheet(scope.campaign, scope, employer, lines, progress, min(max(page, 1), pages), pages)

    async def decide(self, actor: Actor, employer_id: int, campaign_id: int, membership_id: int,
                     application_id: int, decision: str) -> tuple[ReviewLine, Progress, ReviewScope]:
        """Keep or revoke one right ("Retirer" revokes the grant at once, through the référents' own
        revocation: journal, applications' sessions ended). Raises NotAuthorized, NotFound, ServiceError."""
        from convergences.employers.services import EmployerService

        require(actor, P.GRANTS_MANAGE, employer_id)
        async with transaction(self.rt.maker) as db:
            scope, _employer = await self._scope(db, employer_id, campaign_id)
            found = (await db.execute(select(Grant, Membership, Application)
                                      .join(Membership, Membership.id == Grant.membership_id)
                                      .join(Application, Application.id == Grant.application_id)
                                      .where(Grant.membership_id == membership_id,
                                             Grant.application_id == application_id,
                                             Membership.employer_id == employer_id))).first()
            existing = await db.scalar(select(ReviewDecision).where(
                ReviewDecision.scope_id == scope.id, ReviewDecision.membership_id == membership_id,
                ReviewDecision.application_id == application_id))
            if found is None:
                if existing is not None and existing.decision == REVOKE:
                    raise ServiceError("Ce droit a déjà été retiré pendant cette revue ; pour le rendre, "
                                       "utilisez la liste des agents.")
                raise NotFound()
            grant, membership, application = found
            # Checked after the ids: another employer's line is "not found", whatever the form says.
            if scope.completed_at is not None:
                raise ServiceError("Cette revue est terminée : ses décisions ne peuvent plus être modifiées.")
            if decision not in (KEEP, REVOKE):
                raise ServiceError("Choisissez « Conserver » ou « Retirer ».")
            if existing is not None and existing.decision == decision == KEEP:
                line = ReviewLine(membership, application, grant.role, decision)
            else:
                if existing is None:
                    existing = ReviewDecision(scope_id=scope.id, membership_id=membership.id,
                                              application_id=application.id, decision=decision)
                    db.add(existing)
                existing.decision, existing.role, existing.decided_by_id = decision, grant.role, actor.account_id
                audit.record(db, actor, Action.REVIEW_DECIDE, employer_id=employer_id, target_type="grant",
                             target_id=membership.id, application_id=application.id,
                             target_label=f"{membership.account.full_name} — {application.name}",
                             after={"campagne": scope.campaign.name, "decision": DECISION_LABELS[decision],
                                    "role": grant.role})
                if decision == REVOKE:
                    await EmployerService(self.rt).revoke_grant_in(db, actor, membership, application, grant)
                await db.flush()
                line = ReviewLine(membership, application, grant.role, decision)
            progress = (await _progress(db, [scope]))[scope.id]
        kick_logouts(self.rt)
        return line, progress, scope

    async def complete(self, actor: Actor, employer_id: int, campaign_id: int) -> ReviewScope:
        """Sign the review off: every right must have a decision; the certificate is a journal entry
        (counts kept/revoked, who, when). Raises NotAuthorized, NotFound, ServiceError."""
        require(actor, P.GRANTS_MANAGE, employer_id)
        async with transaction(self.rt.maker) as db:
            scope, employer = await self._scope(db, employer_id, campaign_id)
            if scope.completed_at is not None:
                raise ServiceError("Cette revue est déjà terminée.")
            progress = (await _progress(db, [scope]))[scope.id]
            remaining = progress.total - progress.decided
            if remaining:
                raise ServiceError(f"Il reste {remaining} droit(s) sans décision : choisissez « Conserver » ou "
                                   "« Retirer » pour chacun avant de terminer la revue.")
            scope.completed_at = utcnow()
            scope.completed_by_label = actor.label[:300]
            scope.kept, scope.revoked = progress.kept, progress.revoked
            audit.record(db, actor, Action.REVIEW_COMPLETE, employer_id=employer_id, target_type="review_scope",
                         target_id=scope.id, target_label=f"{scope.campaign.name} — {employer.name}",
                         after={"campagne": scope.campaign.name, "conserves": progress.kept,
                                "retires": progress.revoked, "termine_par": actor.label,
                                "termine_le": scope.completed_at.isoformat()})
            return scope

    async def certificate(self, actor: Actor, employer_id: int, campaign_id: int) -> tuple[ReviewScope, Employer]:
        """The completed review's certificate. Raises NotAuthorized, NotFound (also while not completed)."""
        require(actor, P.EMPLOYER_VIEW, employer_id)
        async with transaction(self.rt.maker) as db:
            scope, employer = await self._scope(db, employer_id, campaign_id)
            if scope.completed_at is None:
                raise NotFound()
            return scope, employer


# -- reminders (a maintenance job) -----------------------------------------------------------------

async def send_reminders(db: AsyncSession, now: datetime, rt: Runtime) -> int:
    """Remind the référents of each employer whose review is not completed: at opening, ``review_reminder_days``
    before the deadline, and after it; once each (a late first run sends only the most relevant one).
    Return how many employers were reminded."""
    from datetime import timedelta

    soon = timedelta(days=rt.settings.retention.review_reminder_days)
    scopes = (await db.scalars(select(ReviewScope).where(ReviewScope.completed_at.is_(None), or_none(
        ReviewScope.reminded_opening_at, ReviewScope.reminded_soon_at, ReviewScope.reminded_late_at)))).all()
    due: list[tuple[ReviewScope, str]] = []
    for scope in scopes:
        deadline = scope.campaign.deadline
        if now >= deadline:
            kind = "late" if scope.reminded_late_at is None else None
        elif now >= deadline - soon:
            kind = "soon" if scope.reminded_soon_at is None else None
        else:
            kind = "opening" if scope.reminded_opening_at is None else None
        if kind is None:
            continue
        # Once each, and never an earlier kind after a later one.
        if kind in ("soon", "late"):
            scope.reminded_opening_at = scope.reminded_opening_at or now
        if kind == "late":
            scope.reminded_soon_at = scope.reminded_soon_at or now
        setattr(scope, f"reminded_{kind}_at", now)
        due.append((scope, kind))
    if not due:
        return 0
    employers = {e.id: e for e in (await db.scalars(select(Employer).where(
        Employer.id.in_({s.employer_id for s, _ in due})))).all()}
    referents: dict[int, list[Account]] = defaultdict(list)
    for membership in (await db.scalars(select(Membership).where(
            Membership.employer_id.in_(employers), Membership.is_referent.is_(True),
            Membership.suspended_at.is_(None)))).all():
        referents[membership.employer_id].append(membership.account)
    for scope, kind in due:
        employer = employers[scope.employer_id]
        for referent in referents[employer.id]:
            rt.mailer.queue(db, referent.email, "review_reminder", kind=kind, referent=referent, employer=employer,
                            campaign=scope.campaign, deadline=scope.campaign.deadline.astimezone(PARIS),
                            link=f"{rt.settings.base_url}/employeurs/{employer.id}/revues/{scope.campaign_id}",
                            cig_name=rt.settings.cig_name)
    return len(due)


def or_none(*columns: Any) -> Any:
    from sqlalchemy import or_

    return or_(*(c.is_(None) for c in columns))
