"""CIG staff screens: admin dashboard, employers, catalogue, correspondents, journal; the
correspondent's portfolio; and the public accessibility statement."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import Provide
from litestar.response import Template

from convergences.accounts.views import Form
from convergences.admin.clients import ClientAdminService
from convergences.admin.forms import CLIENT_CLAIMS, ClientForm, CorrespondentForm
from convergences.admin.services import AdminService, ApplicationInput, EmployerInput, PersonInput
from convergences.audit import views as journal_views
from convergences.authz import Actor
from convergences.errors import ServiceError
from convergences.forms import ApplicationForm, EmployerForm, PersonForm
from convergences.oidc.keys import ALGORITHMS
from convergences.oidc.models import Client
from convergences.web import current, int_list, provide_actor, redirect, render, runtime, text

ADMIN = "/admin"


def _svc(request: Request[Any, Any, Any]) -> AdminService:
    return AdminService(runtime(request))


def _clients(request: Request[Any, Any, Any]) -> ClientAdminService:
    return ClientAdminService(runtime(request))


def _person(form: PersonForm) -> PersonInput:
    return PersonInput(form.given_name, form.family_name, form.email)


def _roles_text(roles: list[dict[str, Any]]) -> str:
    return "\n".join(f"{r['code']}:{r['label']}" for r in roles)


# -- dashboard -------------------------------------------------------------------------------------

@get(ADMIN, name="admin_dashboard")
async def dashboard(request: Request[Any, Any, Any], actor: Actor) -> Template:
    q = text(request.query_params, "q", 100)
    rows, totals = await _svc(request).dashboard(actor, q)
    return render(request, "admin/dashboard.html", "admin/_progress_table.html", actor=actor, nav="admin",
                  rows=rows, totals=totals, q=q, base_url=ADMIN)


# -- employers -------------------------------------------------------------------------------------

async def _employers_page(request: Request[Any, Any, Any], actor: Actor, *, status_code: int = 200,
                          **extra: Any) -> Template:
    q = text(request.query_params, "q", 100)
    listing = await _svc(request).employers(actor, q)
    context: dict[str, Any] = {"form": EmployerForm(), "person": PersonForm(), "chosen": set(), "errors": {},
                               **extra}
    return render(request, "admin/employers.html", status_code=status_code, actor=actor, nav="admin", q=q,
                  **listing, **context)


@get(ADMIN + "/employeurs", name="admin_employers")
async def employers(request: Request[Any, Any, Any], actor: Actor) -> Template:
    return await _employers_page(request, actor)


@post(ADMIN + "/employeurs", name="admin_employer_create")
async def employer_create(request: Request[Any, Any, Any], actor: Actor,
                          data: dict[str, Any] = Form) -> Response[Any]:
    form, person = EmployerForm.parse(data), PersonForm.parse(data)
    chosen = set(int_list(data, "applications"))
    errors = {**form.validate(), **person.validate()}
    if not errors:
        try:
            employer = await _svc(request).create_employer(
                actor, EmployerInput(form.name, form.siret, form.kind), _person(person), sorted(chosen))
        except ServiceError as exc:
            errors = {exc.field or "form": exc.message}
        else:
            return redirect(request, f"{ADMIN}/employeurs/{employer.id}",
                            f"L'employeur {employer.name} est créé ; une invitation a été envoyée à "
                            f"{person.given_name} {person.family_name}, autorité territoriale.")
    return await _employers_page(request, actor, status_code=422, form=form, person=person, chosen=chosen,
                                 errors=errors)


async def _employer_page(request: Request[Any, Any, Any], actor: Actor, employer_id: int, *,
                         status_code: int = 200, **extra: Any) -> Template:
    details = await _svc(request).employer(actor, employer_id)
    employer = details["employer"]
    context: dict[str, Any] = {
        "form": EmployerForm(employer.name, employer.siret, employer.kind), "errors": {},
        "chosen_apps": details["subscribed"], "chosen_staff": details["portfolio"],
        "person": PersonForm(), "person_errors": {}, **extra}
    return render(request, "admin/employer.html", status_code=status_code, actor=actor, nav="admin",
                  **details, **context)


@get(ADMIN + "/employeurs/{employer_id:int}", name="admin_employer")
async def employer_page(request: Request[Any, Any, Any], actor: Actor, employer_id: int) -> Template:
    return await _employer_page(request, actor, employer_id)


@post(ADMIN + "/employeurs/{employer_id:int}", name="admin_employer_update")
async def employer_update(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                          data: dict[str, Any] = Form) -> Response[Any]:
    form = EmployerForm.parse(data)
    apps, staff = set(int_list(data, "applications")), set(int_list(data, "correspondents"))
    errors = form.validate()
    if not errors:
        try:
            await _svc(request).update_employer(actor, employer_id, EmployerInput(form.name, form.siret, form.kind),
                                                sorted(apps), sorted(staff))
        except ServiceError as exc:
            errors = {exc.field or "form": exc.message}
        else:
            return redirect(request, f"{ADMIN}/employeurs/{employer_id}", "Les modifications sont enregistrées.")
    return await _employer_page(request, actor, employer_id, status_code=422, form=form, errors=errors,
                                chosen_apps=apps, chosen_staff=staff)


@post(ADMIN + "/employeurs/{employer_id:int}/autorites", name="admin_authority_add")
async def authority_add(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                        data: dict[str, Any] = Form) -> Response[Any]:
    person = PersonForm.parse(data)
    errors = person.validate()
    if not errors:
        try:
            await _svc(request).add_authority(actor, employer_id, _person(person))
        except ServiceError as exc:
            errors = {exc.field or "form": exc.message}
        else:
            return redirect(request, f"{ADMIN}/employeurs/{employer_id}",
                            f"{person.given_name} {person.family_name} est désigné(e) autorité territoriale.")
    return await _employer_page(request, actor, employer_id, status_code=422, person=person, person_errors=errors)


# -- catalogue -------------------------------------------------------------------------------------

@get(ADMIN + "/applications", name="admin_applications")
async def applications(request: Request[Any, Any, Any], actor: Actor) -> Template:
    items = await _svc(request).applications(actor)
    return render(request, "admin/applications.html", actor=actor, nav="admin", applications=items,
                  form=ApplicationForm(), errors={})


@post(ADMIN + "/applications", name="admin_application_create")
async def application_create(request: Request[Any, Any, Any], actor: Actor,
                             data: dict[str, Any] = Form) -> Response[Any]:
    form = ApplicationForm.parse(data)
    errors = form.validate()
    if not errors:
        try:
            application = await _svc(request).save_application(actor, None, _application_input(form))
        except ServiceError as exc:
            errors = {exc.field or "form": exc.message}
        else:
            return redirect(request, f"{ADMIN}/applications",
                            f"L'application {application.name} est ajoutée au catalogue.")
    items = await _svc(request).applications(actor)
    return render(request, "admin/applications.html", status_code=422, actor=actor, nav="admin",
                  applications=items, form=form, errors=errors)


def _application_input(form: ApplicationForm) -> ApplicationInput:
    return ApplicationInput(form.slug, form.name, form.description, form.launch_url, form.roles)


async def _application_page(request: Request[Any, Any, Any], actor: Actor, application_id: int, *,
                            status_code: int = 200, **extra: Any) -> Template:
    details = await _clients(request).application_details(actor, application_id)
    application = details["application"]
    context: dict[str, Any] = {
        "form": ApplicationForm(application.slug, application.name, application.description,
                                application.launch_url, _roles_text(application.roles)),
        "errors": {}, "client_form": ClientForm(), "client_errors": {}, **extra}
    return render(request, "admin/application.html", status_code=status_code, actor=actor, nav="admin",
                  algorithms=ALGORITHMS, claim_labels=CLIENT_CLAIMS, **details, **context)


@get(ADMIN + "/applications/{application_id:int}", name="admin_application")
async def application_page(request: Request[Any, Any, Any], actor: Actor, application_id: int) -> Template:
    return await _application_page(request, actor, application_id)


@post(ADMIN + "/applications/{application_id:int}", name="admin_application_update")
async def application_update(request: Request[Any, Any, Any], actor: Actor, application_id: int,
                             data: dict[str, Any] = Form) -> Response[Any]:
    form = ApplicationForm.parse(data)
    errors = form.validate()
    if not errors:
        try:
            await _svc(request).save_application(actor, application_id, _application_input(form))
        except ServiceError as exc:
            errors = {exc.field or "form": exc.message}
        else:
            return redirect(request, f"{ADMIN}/applications", "Les modifications sont enregistrées.")
    return await _application_page(request, actor, application_id, status_code=422, form=form, errors=errors)


# -- OpenID Connect clients of an application ------------------------------------------------------

def _clients_url(application_id: int) -> str:
    return f"{ADMIN}/applications/{application_id}"


def _secret_page(request: Request[Any, Any, Any], actor: Actor, application_id: int, client: Client,
                 secret: str | None, *, reason: str) -> Template:
    """The one and only time a secret is shown: a page answered directly (no redirect that would need
    to carry it), never cached."""
    response = render(request, "admin/client_secret.html", actor=actor, nav="admin", client=client,
                      secret=secret, reason=reason, back=_clients_url(application_id))
    response.headers["Cache-Control"] = "no-store"
    return response


@get(ADMIN + "/applications/{application_id:int}/clients", name="admin_clients")
async def clients(request: Request[Any, Any, Any], actor: Actor, application_id: int) -> Response[Any]:
    """The clients are listed on the application's page."""
    await _clients(request).application_details(actor, application_id)
    return redirect(request, _clients_url(application_id) + "#clients")


@post(ADMIN + "/applications/{application_id:int}/clients", name="admin_client_create")
async def client_create(request: Request[Any, Any, Any], actor: Actor, application_id: int,
                        data: dict[str, Any] = Form) -> Response[Any]:
    form = ClientForm.parse(data)
    errors = form.validate()
    if not errors:
        client, secret = await _clients(request).create_client(actor, application_id, form.input())
        return _secret_page(request, actor, application_id, client, secret, reason="created")
    return await _application_page(request, actor, application_id, status_code=422, client_form=form,
                                   client_errors=errors)


async def _client_page(request: Request[Any, Any, Any], actor: Actor, application_id: int, client_pk: int, *,
                       status_code: int = 200, **extra: Any) -> Template:
    details = await _clients(request).client(actor, application_id, client_pk)
    context: dict[str, Any] = {"client_form": ClientForm.of(details["client"]), "client_errors": {}, **extra}
    return render(request, "admin/client.html", status_code=status_code, actor=actor, nav="admin",
                  algorithms=ALGORITHMS, claim_labels=CLIENT_CLAIMS, **details, **context)


@get(ADMIN + "/applications/{application_id:int}/clients/{client_pk:int}", name="admin_client")
async def client_page(request: Request[Any, Any, Any], actor: Actor, application_id: int,
                      client_pk: int) -> Template:
    return await _client_page(request, actor, application_id, client_pk)


@post(ADMIN + "/applications/{application_id:int}/clients/{client_pk:int}", name="admin_client_update")
async def client_update(request: Request[Any, Any, Any], actor: Actor, application_id: int, client_pk: int,
                        data: dict[str, Any] = Form) -> Response[Any]:
    form = ClientForm.parse(data)
    errors = form.validate()
    if not errors:
        client, secret = await _clients(request).update_client(actor, application_id, client_pk, form.input())
        if secret:  # a public client made confidential: its first secret, shown once
            return _secret_page(request, actor, application_id, client, secret, reason="confidential")
        return redirect(request, _clients_url(application_id) + "#clients",
                        f"Le client {client.client_id} est modifié.")
    return await _client_page(request, actor, application_id, client_pk, status_code=422, client_form=form,
                              client_errors=errors)


@post(ADMIN + "/applications/{application_id:int}/clients/{client_pk:int}/secret", name="admin_client_secret")
async def client_secret(request: Request[Any, Any, Any], actor: Actor, application_id: int,
                        client_pk: int) -> Response[Any]:
    try:
        client, secret = await _clients(request).rotate_client_secret(actor, application_id, client_pk)
    except ServiceError as exc:
        return await _client_page(request, actor, application_id, client_pk, status_code=422,
                                  secret_error=exc.message)
    return _secret_page(request, actor, application_id, client, secret, reason="rotated")


@get(ADMIN + "/applications/{application_id:int}/clients/{client_pk:int}/supprimer",
     name="admin_client_delete_confirm")
async def client_delete_confirm(request: Request[Any, Any, Any], actor: Actor, application_id: int,
                                client_pk: int) -> Template:
    details = await _clients(request).client(actor, application_id, client_pk)
    return render(request, "admin/client_delete.html", actor=actor, nav="admin", **details)


@post(ADMIN + "/applications/{application_id:int}/clients/{client_pk:int}/supprimer", name="admin_client_delete")
async def client_delete(request: Request[Any, Any, Any], actor: Actor, application_id: int,
                        client_pk: int) -> Response[Any]:
    client = await _clients(request).delete_client(actor, application_id, client_pk)
    return redirect(request, _clients_url(application_id) + "#clients",
                    f"Le client {client.client_id} est supprimé : l'application ne peut plus l'utiliser.")


# -- correspondents --------------------------------------------------------------------------------

@get(ADMIN + "/correspondants", name="admin_correspondents")
async def correspondents(request: Request[Any, Any, Any], actor: Actor) -> Template:
    staff = await _svc(request).portfolios(actor)
    return render(request, "admin/correspondents.html", actor=actor, nav="admin", staff=staff,
                  form=CorrespondentForm(), errors={})


@post(ADMIN + "/correspondants", name="admin_correspondent_create")
async def correspondent_create(request: Request[Any, Any, Any], actor: Actor,
                               data: dict[str, Any] = Form) -> Response[Any]:
    form = CorrespondentForm.parse(data)
    errors = form.validate()
    if not errors:
        try:
            await _svc(request).create_correspondent(actor, _person(form), form.phone)
        except ServiceError as exc:
            errors = {exc.field or "form": exc.message}
        else:
            return redirect(request, f"{ADMIN}/correspondants",
                            f"{form.given_name} {form.family_name} est correspondant CIG ; une invitation lui a "
                            "été envoyée si son compte n'était pas encore activé.")
    staff = await _svc(request).portfolios(actor)
    return render(request, "admin/correspondents.html", status_code=422, actor=actor, nav="admin", staff=staff,
                  form=form, errors=errors)


# -- journal ---------------------------------------------------------------------------------------

@get(ADMIN + "/journal", name="admin_journal")
async def admin_journal(request: Request[Any, Any, Any], actor: Actor) -> Template:
    filters, number = journal_views.filters_of(request), journal_views.number_of(request)
    found = await _svc(request).global_journal(actor, number, filters)
    return journal_views.render_journal(request, "admin/journal.html", found, filters, number, ADMIN + "/journal",
                                        actor=actor, nav="admin")


@get(ADMIN + "/journal.csv", name="admin_journal_csv")
async def admin_journal_csv(request: Request[Any, Any, Any], actor: Actor) -> Response[str]:
    body, filename = await _svc(request).journal_csv(actor, journal_views.filters_of(request), everything=True)
    return journal_views.csv_download(body, filename)


# -- correspondent's portfolio ---------------------------------------------------------------------

@get("/portefeuille", name="portfolio")
async def portfolio(request: Request[Any, Any, Any], actor: Actor) -> Template:
    q = text(request.query_params, "q", 100)
    rows, totals = await _svc(request).progress(actor, q)
    return render(request, "portfolio/home.html", "admin/_progress_table.html", actor=actor, nav="portfolio",
                  rows=rows, totals=totals, q=q, base_url="/portefeuille")


@get("/portefeuille/journal", name="portfolio_journal")
async def portfolio_journal(request: Request[Any, Any, Any], actor: Actor) -> Template:
    filters, number = journal_views.filters_of(request), journal_views.number_of(request)
    found = await _svc(request).journal(actor, number, filters)
    return journal_views.render_journal(request, "portfolio/journal.html", found, filters, number,
                                        "/portefeuille/journal", actor=actor, nav="portfolio")


@get("/portefeuille/journal.csv", name="portfolio_journal_csv")
async def portfolio_journal_csv(request: Request[Any, Any, Any], actor: Actor) -> Response[str]:
    body, filename = await _svc(request).journal_csv(actor, journal_views.filters_of(request), everything=False)
    return journal_views.csv_download(body, filename)


# -- public ----------------------------------------------------------------------------------------

@get("/accessibilite", name="accessibility")
async def accessibility(request: Request[Any, Any, Any]) -> Template:
    # Public page: the navigation is shown when someone happens to be logged in.
    found = await current(request)
    return render(request, "accessibility.html", actor=found[0] if found else None,
                  cig_name=runtime(request).settings.cig_name)


router = Router(path="/", dependencies={"actor": Provide(provide_actor)}, route_handlers=[
    dashboard, employers, employer_create, employer_page, employer_update, authority_add, applications,
    application_create, application_page, application_update, clients, client_create, client_page,
    client_update, client_secret, client_delete_confirm, client_delete, correspondents, correspondent_create,
    admin_journal, admin_journal_csv, portfolio, portfolio_journal, portfolio_journal_csv, accessibility])
