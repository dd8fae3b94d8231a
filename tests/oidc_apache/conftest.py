"""A real third-party relying party: Apache httpd + mod_auth_openidc in front of a static page.

The portal is the real app under uvicorn (``tests/browser/live.py``), on its own migrated and seeded SQLite
file, for this module only. The Apache client is registered with the ``convergences client create`` CLI,
exactly as an operator would. Without Apache or the module (``make system-deps``) the tests are skipped,
except under CI=true where they fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.browser.live import free_port
from tests.helpers import scratch_directory, unavailable
from tests.mailbox import Mailbox
from tests.oidc_apache.apache import Apache, OidcClient, missing
from tests.oidc_apache.portal import Portal


@pytest.fixture(scope="module")
def apache_required() -> None:
    reason = missing()
    if reason is None:
        return
    unavailable(f"{reason} (install apache2 and libapache2-mod-auth-openidc with `make system-deps`)",
                "mod_auth_openidc tests")


@pytest.fixture(scope="module")
def portal(apache_required: None, mailbox: Mailbox) -> Iterator[Portal]:
    with scratch_directory("convergences-oidc-portal-") as directory:
        server = Portal(directory, smtp_port=mailbox.port).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module", params=["client_secret_basic", "client_secret_post"])
def apache(request: pytest.FixtureRequest, portal: Portal) -> Iterator[Apache]:
    """One Apache per token endpoint authentication method of the contract, each its own registered client."""
    with scratch_directory("convergences-apache-") as directory:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        out = portal.cli("client", "create", "--application", "bip",
                         "--redirect-uri", f"{base}/protected/redirect_uri", "--alg", "RS256",
                         "--backchannel-logout-uri", f"{base}/protected/redirect_uri?logout=backchannel",
                         "--post-logout-redirect-uri", f"{base}/public/logged-out.html")
        registered = json.loads(out[out.index("{"):out.rindex("}") + 1])
        server = Apache(directory, portal.url + "/.well-known/openid-configuration",
                        OidcClient(registered["client_id"], registered["client_secret"]), port=port,
                        token_endpoint_auth=request.param)
        server.start()
        try:
            yield server
        finally:
            server.stop()
