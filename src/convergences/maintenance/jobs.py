"""The registry of periodic jobs run by ``convergences maintenance``.

A job is ``(name, label, run)`` with ``run(db, now, rt) -> count``; a job written against the settings
only (``fn(db, now, settings)``, e.g. the journal purge) is registered with :meth:`Job.of_settings`.
Adding one is one line in :data:`JOBS`. Each job runs in its own transaction (a failing job rolls back
alone and does not stop the others), with the same ``now`` for all: tests and ``--now`` drive the clock.
Every job is idempotent: a second run at the same ``now`` finds nothing left to do.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from convergences.audit.retention import purge_journal
from convergences.db import transaction
from convergences.maintenance import purges
from convergences.maintenance.inactivity import suspend_inactive, warn_inactive
from convergences.runtime import Runtime
from convergences.settings import Settings

log = logging.getLogger(__name__)

RuntimeJob = Callable[[AsyncSession, datetime, Runtime], Awaitable[int]]
SettingsJob = Callable[[AsyncSession, datetime, Settings], Awaitable[int]]


@dataclass(frozen=True)
class Job:
    name: str
    label: str
    run: RuntimeJob

    @classmethod
    def of_settings(cls, name: str, label: str, fn: SettingsJob) -> Job:
        async def run(db: AsyncSession, now: datetime, rt: Runtime) -> int:
            return await fn(db, now, rt.settings)

        return cls(name, label, run)


def _review_reminders() -> RuntimeJob:
    from convergences.reviews.services import send_reminders

    return send_reminders


JOBS: list[Job] = [
    Job("inactivity-warnings", "Comptes inactifs prévenus", warn_inactive),
    Job("inactivity-suspensions", "Rattachements suspendus pour inactivité", suspend_inactive),
    Job("review-reminders", "Relances de revue des droits", _review_reminders()),
    Job.of_settings("invitations", "Invitations périmées supprimées", purges.purge_invitations),
    Job.of_settings("login-sessions", "Sessions expirées supprimées", purges.purge_login_sessions),
    Job.of_settings("login-throttles", "Compteurs d'échecs de connexion supprimés", purges.purge_login_throttles),
    Job.of_settings("oidc-codes", "Codes d'autorisation expirés supprimés", purges.purge_authorization_codes),
    Job.of_settings("oidc-tokens", "Jetons expirés supprimés", purges.purge_tokens),
    Job.of_settings("oidc-rp-sessions", "Sessions d'applications terminées supprimées", purges.purge_rp_sessions),
    Job.of_settings("oidc-logout-deliveries", "Déconnexions d'applications remises supprimées",
                    purges.purge_logout_deliveries),
    Job.of_settings("outbox-mail", "Courriels envoyés supprimés", purges.purge_outbox_mail),
    Job.of_settings("journal", "Entrées du journal purgées (durée de conservation échue)", purge_journal),
]


@dataclass(frozen=True)
class JobResult:
    job: Job
    count: int
    error: str | None = None


async def run_jobs(rt: Runtime, now: datetime, jobs: list[Job] | None = None) -> list[JobResult]:
    """Run every job, one transaction each; a job that fails is reported and rolled back alone."""
    results = []
    for job in JOBS if jobs is None else jobs:
        try:
            async with transaction(rt.maker) as db:
                count = await job.run(db, now, rt)
        except Exception as exc:  # noqa: BLE001 - one broken job must not stop the others
            log.exception("maintenance job %s failed", job.name)
            results.append(JobResult(job, 0, type(exc).__name__))
            continue
        results.append(JobResult(job, count))
    return results


async def run_maintenance(rt: Runtime, now: datetime) -> tuple[list[JobResult], int, int]:
    """The jobs, then the mail and back-channel logout outboxes (what the jobs queued goes out now)."""
    from convergences.oidc.services import LogoutOutbox

    results = await run_jobs(rt, now)
    return results, await rt.mailer.deliver_pending(), await LogoutOutbox(rt).deliver_pending()
