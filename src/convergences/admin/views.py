"""CIG staff screens: admin dashboard, employers, catalogue, correspondents, journal; the
correspondent's portfolio; and the public accessibility statement."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import Provide
from litestar.response import Template

from convergences.accounts.views import Form
from convergences.admin.services import AdminService, ApplicationInput, EmployerInput, PersonInput
from convergences.authz import Actor
from convergences.errors import ServiceError
from convergences.forms import ApplicationForm, EmployerForm, PersonForm
from convergences.web import current, int_list, page_number, provide_actor, redirect, render, runtime, text

ADMIN = "/admin"
PHONE_RE = re.compile(r"^[0-9+() .-]{6,30}$")


def _svc(request: Request[Any, Any, Any]) -> AdminService:
    return AdminService(runtime(request))


@dataclass
class CorrespondentForm(PersonForm):
    """A correspondent: the person, plus the optional phone shown to the employers they support."""

    phone: str = ""

    @classmethod
    def parse(cls, form: Any) -> CorrespondentForm:
        person = PersonForm.parse(form)
        return cls(person.given_name, person.family_name, person.email, text(form, "phone", 30))

    def validate(self) -> dict[str, str]:
        errors = super().validate()
        if self.phone and not PHONE_RE.match(self.phone):
            errors["phone"] = "Saisissez un numéro de téléphone valide, par exemple 01 56 96 80 80."
        return errors


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


@get(ADMIN + "/applications/{application_id:int}", name="admin_application")
async def application_page(request: Request[Any, Any, Any], actor: Actor, application_id: int) -> Template:
    application = await _svc(request).application(actor, application_id)
    form = ApplicationForm(application.slug, application.name, application.description, application.launch_url,
                           _roles_text(application.roles))
    return render(request, "admin/application.html", actor=actor, nav="admin", application=application,
                  form=form, errors={})


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
    application = await _svc(request).application(actor, application_id)
    return render(request, "admin/application.html", status_code=422, actor=actor, nav="admin",
                  application=application, form=form, errors=errors)


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
    number = page_number(request.query_params.get("page"))
    events, total = await _svc(request).global_journal(actor, number)
    return render(request, "admin/journal.html", actor=actor, nav="admin", events=events, total=total,
                  page=number)


# -- correspondent's portfolio ---------------------------------------------------------------------

@get("/portefeuille", name="portfolio")
async def portfolio(request: Request[Any, Any, Any], actor: Actor) -> Template:
    q = text(request.query_params, "q", 100)
    rows, totals = await _svc(request).progress(actor, q)
    return render(request, "portfolio/home.html", "admin/_progress_table.html", actor=actor, nav="portfolio",
                  rows=rows, totals=totals, q=q, base_url="/portefeuille")


@get("/portefeuille/journal", name="portfolio_journal")
async def portfolio_journal(request: Request[Any, Any, Any], actor: Actor) -> Template:
    number = page_number(request.query_params.get("page"))
    events, total = await _svc(request).journal(actor, number)
    return render(request, "portfolio/journal.html", actor=actor, nav="portfolio", events=events, total=total,
                  page=number)


# -- public ----------------------------------------------------------------------------------------

@get("/accessibilite", name="accessibility")
async def accessibility(request: Request[Any, Any, Any]) -> Template:
    # Public page: the navigation is shown when someone happens to be logged in.
    found = await current(request)
    return render(request, "accessibility.html", actor=found[0] if found else None,
                  cig_name=runtime(request).settings.cig_name)


router = Router(path="/", dependencies={"actor": Provide(provide_actor)}, route_handlers=[
    dashboard, employers, employer_create, employer_page, employer_update, authority_add, applications,
    application_create, application_page, application_update, correspondents, correspondent_create,
    admin_journal, portfolio, portfolio_journal, accessibility])
