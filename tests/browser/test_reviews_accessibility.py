"""The access review pages through real Chromium + axe: the CIG admin opens a campaign with the form (and its
errors), a référent reviews every right with one htmx click each and signs it off, the certificate, the
correspondent's progress. The demo seed has no campaign, so the role crawl alone would not reach these."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from playwright.sync_api import expect

from convergences.seed import DEMO_PASSWORD
from tests.browser.conftest import Visitor
from tests.browser.live import login
from tests.browser.test_accessibility import Audit, auditor

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_review_pages_pass_axe(visitor: Callable[[], Visitor]) -> None:
    audit = Audit()
    admin = auditor(visitor)
    page = admin.page
    login(page, "admin@cig-demo.fr", DEMO_PASSWORD)
    page.goto("/revues")
    audit.check(admin, "campaigns (CIG admin)")
    page.get_by_label("Nom de la campagne").fill("Revue accessibilité")
    page.get_by_label("Échéance").fill("2020-01-01")
    with page.expect_navigation():
        page.get_by_role("button", name="Ouvrir la campagne").click()
    expect(page.locator("[aria-invalid=true]").first).to_be_visible()
    audit.check(admin, "campaign form with errors")
    page.get_by_label("Échéance").fill((date.today() + timedelta(days=30)).isoformat())
    page.get_by_label("Seulement les employeurs cochés ci-dessous").check()
    page.get_by_label("Commune de Bellerive-sur-Marne").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Ouvrir la campagne").click()
    expect(page.locator("h1")).to_have_text("Revue accessibilité")
    audit.check(admin, "campaign progress (CIG admin)")
    progress_path = page.url

    referent = auditor(visitor)
    rp = referent.page
    login(rp, "rh@bellerive.example", DEMO_PASSWORD)
    rp.get_by_role("navigation", name="Navigation principale").get_by_role("link", name="Gestion").click()
    rp.get_by_role("link", name="Revue des droits").click()
    audit.check(referent, "employer's reviews")
    rp.get_by_role("link", name="Revue accessibilité").click()
    audit.check(referent, "review sheet")
    keep = rp.get_by_role("button", name=re.compile("^Conserver"))
    count = keep.count()
    assert count > 0
    keep.first.click()
    expect(rp.locator("tbody .saved")).to_be_visible()
    audit.check(referent, "review sheet after one decision (htmx)")
    while rp.get_by_role("button", name=re.compile("^Conserver")).count():
        before = rp.get_by_role("button", name=re.compile("^Conserver")).count()
        rp.get_by_role("button", name=re.compile("^Conserver")).first.click()
        expect(rp.get_by_role("button", name=re.compile("^Conserver"))).to_have_count(before - 1)
    with rp.expect_navigation():
        rp.get_by_role("button", name="Terminer la revue").click()
    expect(rp.locator("h1")).to_have_text("Certificat de revue des droits d'accès")
    audit.check(referent, "certificate")

    correspondent = auditor(visitor)
    login(correspondent.page, "c.bernard@cig-demo.fr", DEMO_PASSWORD)
    correspondent.page.goto(progress_path)
    expect(correspondent.page.locator("tbody")).to_contain_text("Terminée")
    audit.check(correspondent, "campaign progress (correspondent)")
    for seen in (admin, referent, correspondent):
        audit.console(seen)
    audit.assert_clean()
