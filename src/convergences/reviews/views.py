"""Access review pages: campaigns and their progress (CIG staff), the référent's review sheet (one click per
right, the row swapped by htmx), the completion certificate."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import Provide
from litestar.response import Template

from convergences.accounts.views import Form
from convergences.authz import Actor, Permission, may
from convergences.errors import FormInvalid, ServiceError
from convergences.reviews.services import DECISION_LABELS, CampaignInput, ReviewService
from convergences.web import int_list, is_htmx, page_number, provide_actor, redirect, render, runtime, text

BASE = "/employeurs/{employer_id:int}/revues"
STATUS_LABELS = {"not_started": "Non commencée", "in_progress": "En cours", "completed": "Terminée"}


def _svc(request: Request[Any, Any, Any]) -> ReviewService:
    return ReviewService(runtime(request))


async def _campaigns_page(request: Request[Any, Any, Any], actor: Actor, form: CampaignInput | None = None,
                          errors: dict[str, str] | None = None) -> Template:
    svc = _svc(request)
    campaigns = await svc.campaigns(actor)
    can_open = may(actor, Permission.REVIEWS_MANAGE)
    employers = await svc.employers_for_form(actor) if can_open else []
    return render(request, "reviews/campaigns.html", status_code=422 if errors else 200, actor=actor,
                  campaigns=campaigns, can_open=can_open, employers=employers,
                  form=form or CampaignInput("", ""), errors=errors or {})


@get("/revues", name="reviews_campaigns")
async def campaigns(request: Request[Any, Any, Any], actor: Actor) -> Template:
    return await _campaigns_page(request, actor)


@post("/admin/revues", name="review_open")
async def campaign_open(request: Request[Any, Any, Any], actor: Actor, data: dict[str, Any] = Form) -> Response[Any]:
    form = CampaignInput(text(data, "name", 200), text(data, "deadline", 10),
                         int_list(data, "employers"), text(data, "scope", 10) != "selection")
    try:
        campaign = await _svc(request).open_campaign(actor, form)
    except FormInvalid as exc:
        return await _campaigns_page(request, actor, form, exc.errors)
    return redirect(request, f"/revues/{campaign.id}",
                    f"La campagne « {campaign.name} » est ouverte ; les référents seront prévenus par courriel.")


@get("/revues/{campaign_id:int}", name="review_progress")
async def progress(request: Request[Any, Any, Any], actor: Actor, campaign_id: int) -> Template:
    campaign, statuses = await _svc(request).progress(actor, campaign_id)
    return render(request, "reviews/progress.html", actor=actor, campaign=campaign, statuses=statuses,
                  status_labels_review=STATUS_LABELS)


@get(BASE, name="employer_reviews")
async def employer_reviews(request: Request[Any, Any, Any], actor: Actor, employer_id: int) -> Template:
    employer, statuses = await _svc(request).employer_reviews(actor, employer_id)
    return render(request, "reviews/employer.html", actor=actor, employer=employer, statuses=statuses,
                  status_labels_review=STATUS_LABELS)


@get(BASE + "/{campaign_id:int}", name="review")
async def review(request: Request[Any, Any, Any], actor: Actor, employer_id: int, campaign_id: int) -> Template:
    sheet = await _svc(request).sheet(actor, employer_id, campaign_id, page_number(request.query_params.get("page")))
    return render(request, "reviews/sheet.html", actor=actor, sheet=sheet, employer=sheet.employer,
                  decision_labels=DECISION_LABELS)


@post(BASE + "/{campaign_id:int}/lignes/{membership_id:int}/{application_id:int}", name="review_decide")
async def decide(request: Request[Any, Any, Any], actor: Actor, employer_id: int, campaign_id: int,
                 membership_id: int, application_id: int, data: dict[str, Any] = Form) -> Response[Any]:
    svc = _svc(request)
    back = f"/employeurs/{employer_id}/revues/{campaign_id}"
    try:
        line, progress_, scope = await svc.decide(actor, employer_id, campaign_id, membership_id, application_id,
                                                  text(data, "decision", 10))
    except ServiceError as exc:
        if not is_htmx(request):
            return redirect(request, back, exc.message)
        sheet = await svc.sheet(actor, employer_id, campaign_id)
        line = next((li for li in sheet.lines if li.key == f"{membership_id}-{application_id}"), None)
        if line is None:
            return redirect(request, back, exc.message)
        return render(request, "reviews/_line.html", status_code=422, actor=actor, line=line, sheet=sheet,
                      employer=sheet.employer, decision_labels=DECISION_LABELS, line_error=exc.message)
    if not is_htmx(request):
        return redirect(request, back, f"Décision enregistrée : {DECISION_LABELS[line.decision or 'keep']}.")
    sheet_like = {"campaign": scope.campaign, "scope": scope, "progress": progress_}
    return render(request, "reviews/_line.html", actor=actor, line=line, sheet=sheet_like, employer_id=employer_id,
                  decision_labels=DECISION_LABELS, oob_progress=True, line_saved=True)


@post(BASE + "/{campaign_id:int}/terminer", name="review_complete")
async def complete(request: Request[Any, Any, Any], actor: Actor, employer_id: int, campaign_id: int) -> Response[Any]:
    back = f"/employeurs/{employer_id}/revues/{campaign_id}"
    try:
        await _svc(request).complete(actor, employer_id, campaign_id)
    except ServiceError as exc:
        return redirect(request, back, exc.message)
    return redirect(request, back + "/certificat", "La revue est terminée : son certificat est inscrit au journal.")


@get(BASE + "/{campaign_id:int}/certificat", name="review_certificate")
async def certificate(request: Request[Any, Any, Any], actor: Actor, employer_id: int, campaign_id: int) -> Template:
    scope, employer = await _svc(request).certificate(actor, employer_id, campaign_id)
    return render(request, "reviews/certificate.html", actor=actor, scope=scope, employer=employer,
                  campaign=scope.campaign)


router = Router(path="/", dependencies={"actor": Provide(provide_actor)}, route_handlers=[
    campaigns, campaign_open, progress, employer_reviews, review, decide, complete, certificate])
