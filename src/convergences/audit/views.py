"""What the three journal pages (employer, portfolio, global) share: filters from the query string,
page-or-fragment rendering, and the CSV download. The routes themselves live with their pages."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.response import Template

from convergences.audit.services import JournalFilter, JournalPage, action_choices
from convergences.web import page_number, render

RESULTS_FRAGMENT = "audit/_journal_results.html"


def filters_of(request: Request[Any, Any, Any]) -> JournalFilter:
    return JournalFilter.from_query(request.query_params)


def number_of(request: Request[Any, Any, Any]) -> int:
    return page_number(request.query_params.get("page"))


def render_journal(request: Request[Any, Any, Any], template: str, journal: JournalPage, filters: JournalFilter,
                   number: int, base_url: str, **context: Any) -> Template:
    """The page, or only the results when the htmx filter form asked."""
    return render(request, template, RESULTS_FRAGMENT, events=journal.events, total=journal.total, page=number,
                  filters=filters, base_url=base_url, export_url=base_url + ".csv",
                  action_choices=action_choices(), application_choices=journal.applications, **context)


def csv_download(body: str, filename: str) -> Response[str]:
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
