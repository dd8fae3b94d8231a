"""A short, human description of a device from its user agent, and the key that says "same device"."""

from __future__ import annotations

import ipaddress

_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chromium/", "Chromium"),
             ("Chrome/", "Chrome"), ("Safari/", "Safari"))
_SYSTEMS = (("Windows", "Windows"), ("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iPadOS"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def describe(user_agent: str | None) -> str:
    """E.g. "Firefox sur Windows"; "Appareil inconnu" when nothing is recognised."""
    ua = user_agent or ""
    browser = next((name for token, name in _BROWSERS if token in ua), "")
    system = next((name for token, name in _SYSTEMS if token in ua), "")
    if browser and system:
        return f"{browser} sur {system}"
    return browser or system or ("Autre client" if ua else "Appareil inconnu")


def network(ip: str | None) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of an address: a home or office box, not one address."""
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return ip or ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def device_key(user_agent: str | None, ip: str | None) -> str:
    return f"{describe(user_agent)}|{network(ip)}"
