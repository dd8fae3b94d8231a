"""Employer pages: overview, agents grid with inline rights, agent edit/suspend/delete, référents, journal."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import Provide
from litestar.response import Template

from convergences.accounts.credentials import CredentialService
from convergences.accounts.views import Form
from convergences.audit import views as journal_views
from convergences.authz import Actor, Permission, may
from convergences.employers.services import AgentInput, EmployerService
from convergences.errors import FormInvalid, ServiceError
from convergences.forms import PersonForm
from convergences.mfa.views import step_up
from convergences.web import is_htmx, page_number, provide_actor, redirect, render, runtime, text

BASE = "/employeurs/{employer_id:int}"


def _svc(request: Request[Any, Any, Any]) -> EmployerService:
    return EmployerService(runtime(request))


def _grid_args(source: Any) -> dict[str, Any]:
    return {"q": text(source, "q", 100), "sort": text(source, "tri", 20) or "nom",
            "direction": text(source, "ordre", 4) or "asc", "status": text(source, "statut", 20),
            "page": page_number(text(source, "page", 10))}


async def _grid_context(request: Request[Any, Any, Any], actor: Actor, employer_id: int, *, full: bool = True,
                        **extra: Any) -> dict[str, Any]:
    svc = _svc(request)
    grid = await svc.agents(actor, employer_id, **_grid_args(request.query_params))
    # A fragment (search, sort, page) needs only the grid; the page also shows the overview.
    overview = await svc.overview(actor, employer_id) if full else {"employer": grid.employer}
    return {"actor": actor, "grid": grid, **overview, "form": PersonForm(), "errors": {},
            "can_manage": may(actor, Permission.ACCOUNTS_MANAGE, employer_id),
            "can_grant": may(actor, Permission.GRANTS_MANAGE, employer_id), **extra}


@get(BASE, name="employer")
async def employer_home(request: Request[Any, Any, Any], actor: Actor, employer_id: int) -> Template:
    overview = await _svc(request).overview(actor, employer_id)
    return render(request, "employers/home.html", actor=actor, **overview,
                  can_manage=may(actor, Permission.ACCOUNTS_MANAGE, employer_id),
                  can_designate=may(actor, Permission.REFERENTS_DESIGNATE, employer_id))


@get(BASE + "/agents", name="agents")
async def agents(request: Request[Any, Any, Any], actor: Actor, employer_id: int) -> Template:
    context = await _grid_context(request, actor, employer_id, full=not is_htmx(request))
    return render(request, "employers/agents.html", "employers/_agents_table.html", **context)


async def _attempt(call: Any) -> tuple[Any, dict[str, str]]:
    """Run one service call; return (result, {}) or (None, French per-field errors)."""
    try:
        return await call, {}
    except FormInvalid as exc:
        return None, exc.errors
    except ServiceError as exc:
        return None, {exc.field or "form": exc.message}


@post(BASE + "/agents", name="agent_create")
async def agent_create(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                       data: dict[str, Any] = Form) -> Response[Any]:
    form = PersonForm.parse(data)
    created, errors = await _attempt(_svc(request).create_agent(
        actor, employer_id, AgentInput(**form.__dict__), errors=form.validate()))
    if not errors:
        message = (f"{form.given_name} {form.family_name} avait déjà un compte Convergences : il est "
                   "maintenant rattaché à votre employeur." if created[1] else
                   f"Le compte de {form.given_name} {form.family_name} est créé ; une invitation lui a été "
                   "envoyée par courriel.")
        return redirect(request, f"/employeurs/{employer_id}/agents", message)
    context = await _grid_context(request, actor, employer_id, form=form, errors=errors)
    return render(request, "employers/agents.html", "employers/_agent_form.html", status_code=422, **context)


@get(BASE + "/agents/{membership_id:int}", name="agent")
async def agent_page(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                     membership_id: int) -> Template:
    return await _agent_page(request, actor, employer_id, membership_id)


async def _agent_page(request: Request[Any, Any, Any], actor: Actor, employer_id: int, membership_id: int,
                      form: PersonForm | None = None, errors: dict[str, str] | None = None) -> Template:
    """The agent's page; with ``errors``, the edit form re-rendered with 422."""
    row = await _svc(request).agent(actor, employer_id, membership_id)
    overview = await _svc(request).overview(actor, employer_id)
    account = row.account
    return render(request, "employers/agent.html", status_code=422 if errors else 200, actor=actor, row=row,
                  **overview, errors=errors or {},
                  form=form or PersonForm(account.given_name, account.family_name, account.email),
                  can_manage=may(actor, Permission.ACCOUNTS_MANAGE, employer_id),
                  can_resend=may(actor, Permission.INVITATIONS_RESEND, employer_id))


@post(BASE + "/agents/{membership_id:int}", name="agent_update")
async def agent_update(request: Request[Any, Any, Any], actor: Actor, employer_id: int, membership_id: int,
                       data: dict[str, Any] = Form) -> Response[Any]:
    form = PersonForm.parse(data)
    _, errors = await _attempt(_svc(request).update_agent(
        actor, employer_id, membership_id, AgentInput(**form.__dict__), errors=form.validate()))
    if not errors:
        return redirect(request, f"/employeurs/{employer_id}/agents", "Les modifications sont enregistrées.")
    return await _agent_page(request, actor, employer_id, membership_id, form, errors)


async def _action(request: Request[Any, Any, Any], employer_id: int, membership_id: int, call: Any,
                  done: str, back: str | None = None) -> Response[Any]:
    back = back or f"/employeurs/{employer_id}/agents/{membership_id}"
    try:
        await call
    except ServiceError as exc:
        return redirect(request, back, exc.message)
    return redirect(request, back, done)


@post(BASE + "/agents/{membership_id:int}/suspendre", name="agent_suspend")
async def agent_suspend(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                        membership_id: int) -> Response[Any]:
    return await _action(request, employer_id, membership_id,
                         _svc(request).set_suspended(actor, employer_id, membership_id, True),
                         "Le compte est suspendu : ses sessions en cours sont fermées.")


@post(BASE + "/agents/{membership_id:int}/reactiver", name="agent_reactivate")
async def agent_reactivate(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                           membership_id: int) -> Response[Any]:
    return await _action(request, employer_id, membership_id,
                         _svc(request).set_suspended(actor, employer_id, membership_id, False),
                         "Le compte est réactivé.")


@post(BASE + "/agents/{membership_id:int}/invitation", name="agent_invite")
async def agent_invite(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                       membership_id: int) -> Response[Any]:
    return await _action(request, employer_id, membership_id,
                         _svc(request).resend_invitation(actor, employer_id, membership_id),
                         "Une nouvelle invitation a été envoyée ; l'ancien lien ne fonctionne plus.")


@post(BASE + "/agents/{membership_id:int}/debloquer", name="agent_unthrottle")
async def agent_unthrottle(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                           membership_id: int) -> Response[Any]:
    return await _action(request, employer_id, membership_id,
                         CredentialService(runtime(request)).clear_throttle(actor, employer_id, membership_id),
                         "Les tentatives de connexion échouées de ce compte sont effacées.")


@get(BASE + "/agents/{membership_id:int}/supprimer", name="agent_delete_confirm")
async def agent_delete_confirm(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                               membership_id: int) -> Template:
    # Same permission as the deletion itself: nobody reaches the confirmation who could not delete.
    if not may(actor, Permission.ACCOUNTS_MANAGE, employer_id):
        from convergences.authz import NotAuthorized

        raise NotAuthorized(Permission.ACCOUNTS_MANAGE.value)
    row = await _svc(request).agent(actor, employer_id, membership_id)
    return render(request, "employers/agent_delete.html", actor=actor, row=row, employer_id=employer_id)


@post(BASE + "/agents/{membership_id:int}/supprimer", name="agent_delete")
async def agent_delete(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                       membership_id: int) -> Response[Any]:
    try:
        await _svc(request).delete_agent(actor, employer_id, membership_id)
    except ServiceError as exc:
        return redirect(request, f"/employeurs/{employer_id}/agents/{membership_id}", exc.message)
    return redirect(request, f"/employeurs/{employer_id}/agents", "L'agent est retiré de votre employeur.")


@post(BASE + "/agents/{membership_id:int}/droits/{application_id:int}", name="grant_toggle")
async def grant_toggle(request: Request[Any, Any, Any], actor: Actor, employer_id: int, membership_id: int,
                       application_id: int, data: dict[str, Any] = Form) -> Response[Any]:
    enabled = text(data, "enabled", 5) in {"1", "on", "true"}
    role = text(data, "role", 60) or None
    svc = _svc(request)
    error = None
    try:
        row = await svc.set_grant(actor, employer_id, membership_id, application_id, enabled, role)
    except ServiceError as exc:
        error = exc.message
        row = await svc.agent(actor, employer_id, membership_id)
    if not is_htmx(request):
        return redirect(request, f"/employeurs/{employer_id}/agents",
                        error or "Le droit d'accès est enregistré.")
    employer, applications = await svc.grid_frame(actor, employer_id)
    return render(request, "employers/_agent_row.html", status_code=422 if error else 200, actor=actor, row=row,
                  applications=applications, employer=employer, row_error=error,
                  row_saved=None if error else application_id, can_manage=True, can_grant=True)


@get(BASE + "/referents", name="referents")
async def referents(request: Request[Any, Any, Any], actor: Actor, employer_id: int) -> Template:
    svc = _svc(request)
    members = await svc.members(actor, employer_id)
    overview = await svc.overview(actor, employer_id)
    return render(request, "employers/referents.html", actor=actor, members=members, **overview,
                  form=PersonForm(), errors={})


@post(BASE + "/referents", name="referent_create")
async def referent_create(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                          data: dict[str, Any] = Form) -> Response[Any]:
    if (back := await step_up(request, actor, f"/employeurs/{employer_id}/referents")) is not None:
        return back
    form = PersonForm.parse(data)
    svc = _svc(request)
    _, errors = await _attempt(svc.create_agent(actor, employer_id, AgentInput(**form.__dict__), referent=True,
                                                errors=form.validate()))
    if not errors:
        return redirect(request, f"/employeurs/{employer_id}/referents",
                        f"{form.given_name} {form.family_name} est désigné(e) référent administrateur.")
    members = await svc.members(actor, employer_id)
    overview = await svc.overview(actor, employer_id)
    return render(request, "employers/referents.html", status_code=422, actor=actor, members=members,
                  **overview, form=form, errors=errors)


@post(BASE + "/referents/{membership_id:int}/designer", name="referent_designate")
async def referent_designate(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                             membership_id: int) -> Response[Any]:
    if (back := await step_up(request, actor, f"/employeurs/{employer_id}/referents")) is not None:
        return back  # designating or revoking a référent needs a recent authentication
    return await _action(request, employer_id, membership_id,
                         _svc(request).set_referent(actor, employer_id, membership_id, True),
                         "Le référent administrateur est désigné.", f"/employeurs/{employer_id}/referents")


@post(BASE + "/referents/{membership_id:int}/retirer", name="referent_revoke")
async def referent_revoke(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                          membership_id: int) -> Response[Any]:
    if (back := await step_up(request, actor, f"/employeurs/{employer_id}/referents")) is not None:
        return back  # designating or revoking a référent needs a recent authentication
    return await _action(request, employer_id, membership_id,
                         _svc(request).set_referent(actor, employer_id, membership_id, False),
                         "Ce compte n'est plus référent administrateur.", f"/employeurs/{employer_id}/referents")


@get(BASE + "/journal", name="employer_journal")
async def journal(request: Request[Any, Any, Any], actor: Actor, employer_id: int) -> Template:
    filters, number = journal_views.filters_of(request), journal_views.number_of(request)
    found = await _svc(request).journal(actor, employer_id, number, filters)
    overview = await _svc(request).overview(actor, employer_id) if not is_htmx(request) else {}
    return journal_views.render_journal(request, "employers/journal.html", found, filters, number,
                                        f"/employeurs/{employer_id}/journal", actor=actor, **overview)


@get(BASE + "/journal.csv", name="employer_journal_csv")
async def journal_csv(request: Request[Any, Any, Any], actor: Actor, employer_id: int) -> Response[str]:
    body, filename = await _svc(request).journal_csv(actor, employer_id, journal_views.filters_of(request))
    return journal_views.csv_download(body, filename)


router = Router(path="/", dependencies={"actor": Provide(provide_actor)}, route_handlers=[
    employer_home, agents, agent_create, agent_page, agent_update, agent_suspend, agent_reactivate, agent_invite,
    agent_unthrottle, agent_delete_confirm, agent_delete, grant_toggle, referents, referent_create,
    referent_designate, referent_revoke, journal, journal_csv])
