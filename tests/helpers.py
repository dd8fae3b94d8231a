"""A small form-posting browser over Litestar's test client: CSRF handled like a real page does."""

from __future__ import annotations

import re
from typing import Any

from httpx import Cookies, Response
from litestar.testing import AsyncTestClient

from convergences.seed import DEMO_PASSWORD

CSRF_COOKIE = "cvg_csrf"


class Browser:
    def __init__(self, client: AsyncTestClient[Any], *, own_cookies: bool = False) -> None:
        self.client = client
        self.jar = Cookies() if own_cookies else None

    async def _send(self, method: str, url: str, **kwargs: Any) -> Response:
        if self.jar is not None:
            self.client.cookies = self.jar
        try:
            return await self.client.request(method, url, **kwargs)
        finally:
            if self.jar is not None:
                self.jar = Cookies(self.client.cookies)

    async def get(self, url: str, **kwargs: Any) -> Response:
        kwargs.setdefault("follow_redirects", False)
        return await self._send("GET", url, **kwargs)

    @property
    def cookies(self) -> Cookies:
        return self.jar if self.jar is not None else self.client.cookies

    async def csrf(self) -> str:
        token = self.cookies.get(CSRF_COOKIE)
        if not token:
            await self.get("/login")
            token = self.cookies.get(CSRF_COOKIE)
        assert token, "no CSRF cookie was set"
        return token

    async def post(self, url: str, data: dict[str, Any] | None = None, *, htmx: bool = False,
                   csrf: bool = True, **kwargs: Any) -> Response:
        form = dict(data or {})
        if csrf:
            form["_csrf_token"] = await self.csrf()
        headers = kwargs.pop("headers", {})
        if htmx:
            headers["HX-Request"] = "true"
        kwargs.setdefault("follow_redirects", False)
        return await self._send("POST", url, data=form, headers=headers, **kwargs)

    async def login(self, email: str, password: str = DEMO_PASSWORD) -> Response:
        response = await self.post("/login", {"email": email, "password": password, "next": "/"})
        assert response.status_code == 303, (response.status_code, _text(response))
        return response

    async def logout(self) -> Response:
        return await self.post("/logout")


def _text(response: Response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))[:800]


def page_text(response: Response) -> str:
    return _text(response)
