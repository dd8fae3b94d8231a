"""CIG staff screens (placeholder router, replaced by the admin screens)."""

from litestar import Router

router = Router(path="/", route_handlers=[])
