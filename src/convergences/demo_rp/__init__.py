"""Demo relying parties ("BIP (démo)", "Net Cotisations (démo)"): how an application integrates with Convergences.

Each is a small Litestar app built on a standard OpenID Connect client library (Authlib for the
authorization code flow with PKCE, joserfc for ID-token and logout-token validation). Served by
``convergences demo-apps`` (started by ``make run``).
"""

from convergences.demo_rp.app import DEMO_APPS, DemoApp, create_demo_rp

__all__ = ["DEMO_APPS", "DemoApp", "create_demo_rp"]
