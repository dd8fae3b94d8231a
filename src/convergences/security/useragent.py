"""A short, human label for a User-Agent header ("Firefox sous Windows"), for the sessions page."""

from __future__ import annotations

import re

# Order matters: Edge and Opera announce Chrome too, Chrome announces Safari.
_BROWSERS = [("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chromium/", "Chromium"),
             ("Chrome/", "Chrome"), ("Safari/", "Safari"), ("curl/", "curl"), ("python-httpx", "programme")]
_SYSTEMS = [("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"), ("Windows", "Windows"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux")]


def short_label(user_agent: str | None) -> str:
    ua = user_agent or ""
    browser = next((name for marker, name in _BROWSERS if marker in ua), "")
    system = next((name for marker, name in _SYSTEMS if marker in ua), "")
    if browser and system:
        return f"{browser} sous {system}"
    if browser or system:
        return browser or system
    cleaned = re.sub(r"[^\w ./-]", "", ua)[:40]
    return cleaned or "Navigateur inconnu"
