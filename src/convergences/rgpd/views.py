"""Mes données (access), erasure requests and their decision, erasure by a CIG administrator, employer deletion."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from convergences.authz import Actor
from convergences.errors import FormInvalid, ServiceError
from convergences.rgpd import access
from convergences.rgpd.services import RgpdService
from convergences.web import provide_actor, redirect, render, runtime, text

Form = Body(media_type=RequestEncodingType.URL_ENCODED)
MY_DATA = "/compte/mes-donnees"
MY_ERASURE = "/compte/effacement"
REQUESTS = "/employeurs/{employer_id:int}/effacements"
ADMIN_ERASE = "/admin/comptes/{account_id:int}/effacer"
ADMIN_EMPLOYER_DELETE = "/admin/employeurs/{employer_id:int}/supprimer"


def _svc(request: Request[Any, Any, Any]) -> RgpdService:
    return RgpdService(runtime(request))


def _errors(exc: FormInvalid | ServiceError) -> dict[str, str]:
    """The per-field French messages of a refused form (a rule's refusal goes on the whole form)."""
    return exc.errors if isinstance(exc, FormInvalid) else {exc.field or "form": exc.message}


# -- Mes données ---------------------------------------------------------------------------------------

@get(MY_DATA, name="rgpd_my_data")
async def my_data(request: Request[Any, Any, Any], actor: Actor) -> Template:
    document = await _svc(request).my_data(actor)
    return render(request, "rgpd/my_data.html", actor=actor, nav="my_data", document=document,
                  labels=access.FIELD_LABELS, cell=access.cell, errors={})


@post(MY_DATA, name="rgpd_my_data_download", status_code=200)
async def my_data_download(request: Request[Any, Any, Any], actor: Actor,
                           data: dict[str, Any] = Form) -> Response[Any]:
    """A POST (CSRF-protected), because the download is journaled ("export de mes données")."""
    try:
        body, media_type, filename = await _svc(request).export_my_data(actor, text(data, "format", 10))
    except FormInvalid as exc:
        document = await _svc(request).my_data(actor)
        return render(request, "rgpd/my_data.html", status_code=422, actor=actor, nav="my_data",
                      document=document, labels=access.FIELD_LABELS, cell=access.cell, errors=exc.errors)
    return Response(body, media_type=media_type, status_code=200, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


# -- the person's erasure request ----------------------------------------------------------------------

@get(MY_ERASURE, name="rgpd_erasure")
async def erasure_page(request: Request[Any, Any, Any], actor: Actor) -> Template:
    requests = await _svc(request).my_requests(actor)
    return render(request, "rgpd/erasure_request.html", actor=actor, nav="my_data", requests=requests,
                  errors={}, message="")


@post(MY_ERASURE, name="rgpd_erasure_post")
async def erasure_post(request: Request[Any, Any, Any], actor: Actor, data: dict[str, Any] = Form) -> Response[Any]:
    message = text(data, "message", 5000)
    try:
        count = await _svc(request).request_erasure(actor, message)
    except (FormInvalid, ServiceError) as exc:
        errors = _errors(exc)
        requests = await _svc(request).my_requests(actor)
        return render(request, "rgpd/erasure_request.html", status_code=422, actor=actor, nav="my_data",
                      requests=requests, errors=errors, message=message)
    plural = "vos référents" if count > 1 else "votre référent"
    return redirect(request, MY_ERASURE, f"Votre demande est transmise à {plural} : vous serez informé(e) "
                                         "de leur décision.")


# -- the référents' decision ---------------------------------------------------------------------------

@get(REQUESTS, name="rgpd_requests")
async def requests_page(request: Request[Any, Any, Any], actor: Actor, employer_id: int) -> Template:
    employer, rows = await _svc(request).pending(actor, employer_id)
    return render(request, "rgpd/requests.html", actor=actor, nav="agents", employer=employer,
                  employer_id=employer_id, rows=rows, errors={}, failed=None)


@post(REQUESTS + "/{request_id:int}", name="rgpd_request_decide")
async def request_decide(request: Request[Any, Any, Any], actor: Actor, employer_id: int, request_id: int,
                         data: dict[str, Any] = Form) -> Response[Any]:
    back = f"/employeurs/{employer_id}/effacements"
    decision = text(data, "decision", 20)
    svc = _svc(request)
    try:
        pseudonym = await svc.decide(actor, employer_id, request_id, decision, reason=text(data, "reason", 5000))
    except FormInvalid as exc:
        employer, rows = await svc.pending(actor, employer_id)
        return render(request, "rgpd/requests.html", status_code=422, actor=actor, nav="agents", employer=employer,
                      employer_id=employer_id, rows=rows, errors=exc.errors, failed=request_id)
    except ServiceError as exc:
        return redirect(request, back, exc.message)
    if decision == "refuser":
        return redirect(request, back, "La demande est refusée ; la personne en est informée par courriel.")
    if pseudonym:
        return redirect(request, back, f"Le compte est effacé ; il apparaît désormais au journal sous le nom "
                                       f"« {pseudonym} ».")
    return redirect(request, back, "La personne est retirée de votre employeur ; son compte reste ouvert pour "
                                   "ses autres employeurs, à qui la demande est aussi adressée.")


# -- CIG administrators --------------------------------------------------------------------------------

@get(ADMIN_ERASE, name="rgpd_admin_erase_confirm")
async def admin_erase_confirm(request: Request[Any, Any, Any], actor: Actor, account_id: int) -> Template:
    account, employers = await _svc(request).account(actor, account_id)
    return render(request, "rgpd/admin_erase.html", actor=actor, nav="admin", account=account,
                  employers=employers, errors={})


@post(ADMIN_ERASE, name="rgpd_admin_erase")
async def admin_erase(request: Request[Any, Any, Any], actor: Actor, account_id: int,
                      data: dict[str, Any] = Form) -> Response[Any]:
    svc = _svc(request)
    try:
        pseudonym = await svc.erase_by_admin(actor, account_id, text(data, "confirmation", 254))
    except (FormInvalid, ServiceError) as exc:
        errors = _errors(exc)
        account, employers = await svc.account(actor, account_id)
        return render(request, "rgpd/admin_erase.html", status_code=422, actor=actor, nav="admin",
                      account=account, employers=employers, errors=errors)
    return redirect(request, "/admin/correspondants", f"Le compte est effacé (« {pseudonym} » au journal).")


@get(ADMIN_EMPLOYER_DELETE, name="rgpd_employer_delete_confirm")
async def employer_delete_confirm(request: Request[Any, Any, Any], actor: Actor, employer_id: int) -> Template:
    summary = await _svc(request).employer_summary(actor, employer_id)
    return render(request, "rgpd/employer_delete.html", actor=actor, nav="admin", errors={}, **summary)


@post(ADMIN_EMPLOYER_DELETE, name="rgpd_employer_delete")
async def employer_delete(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                          data: dict[str, Any] = Form) -> Response[Any]:
    svc = _svc(request)
    try:
        erased = await svc.delete_employer(actor, employer_id, text(data, "siret", 30))
    except (FormInvalid, ServiceError) as exc:
        errors = _errors(exc)
        summary = await svc.employer_summary(actor, employer_id)
        return render(request, "rgpd/employer_delete.html", status_code=422, actor=actor, nav="admin",
                      errors=errors, **summary)
    return redirect(request, "/admin/employeurs", f"L'employeur est supprimé ; {erased} compte(s) effacé(s).")


router = Router(path="/", dependencies={"actor": Provide(provide_actor)}, route_handlers=[
    my_data, my_data_download, erasure_page, erasure_post, requests_page, request_decide, admin_erase_confirm,
    admin_erase, employer_delete_confirm, employer_delete])
