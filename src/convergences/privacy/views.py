"""The public privacy notice (/confidentialite) and the CIG admin's record of processing (HTML, CSV, JSON)."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, Router, get
from litestar.di import Provide
from litestar.response import Template

from convergences.authz import Actor
from convergences.db import utcnow
from convergences.privacy.services import RECORD_COLUMNS, PrivacyService, claim_label
from convergences.web import current, provide_actor, render, runtime

CNIL_COMPLAINT_URL = "https://www.cnil.fr/fr/adresser-une-plainte"


@get("/confidentialite", name="privacy_notice")
async def privacy_notice(request: Request[Any, Any, Any]) -> Template:
    found = await current(request)
    notice = await PrivacyService(runtime(request)).notice()
    return render(request, "privacy/notice.html", actor=found[0] if found else None, notice=notice,
                  settings=notice.settings, claim_label=claim_label, cnil_url=CNIL_COMPLAINT_URL)


@get("/admin/traitements", name="processing_record")
async def processing_record(request: Request[Any, Any, Any], actor: Actor) -> Template:
    rows = await PrivacyService(runtime(request)).record(actor)
    return render(request, "privacy/record.html", actor=actor, rows=rows, columns=RECORD_COLUMNS, tab="record")


def _download(body: str, media_type: str, name: str) -> Response[str]:
    return Response(body, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@get("/admin/traitements.csv", name="processing_record_csv")
async def processing_record_csv(request: Request[Any, Any, Any], actor: Actor) -> Response[str]:
    body = await PrivacyService(runtime(request)).record_csv(actor)
    return _download(body, "text/csv; charset=utf-8", f"registre-traitements-{utcnow():%Y%m%d}.csv")


@get("/admin/traitements.json", name="processing_record_json")
async def processing_record_json(request: Request[Any, Any, Any], actor: Actor) -> Response[str]:
    body = await PrivacyService(runtime(request)).record_json(actor)
    return _download(body, MediaType.JSON, f"registre-traitements-{utcnow():%Y%m%d}.json")


router = Router(path="/", dependencies={"actor": Provide(provide_actor)}, route_handlers=[
    privacy_notice, processing_record, processing_record_csv, processing_record_json])
