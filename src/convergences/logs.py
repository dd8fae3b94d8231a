"""Logging hygiene: one-time tokens in URLs never reach the logs (ASVS 16.2.5, 14.2.1)."""

from __future__ import annotations

import logging
import re

_SECRET_PATH = re.compile(r"(/invitation/|/mot-de-passe/reinitialiser/|/compte/adresse/confirmer/)[^\s\"?]+")


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(_SECRET_PATH.sub(r"\1[masqué]", a) if isinstance(a, str) else a
                                for a in (record.args if isinstance(record.args, tuple) else (record.args,)))
        if isinstance(record.msg, str):
            record.msg = _SECRET_PATH.sub(r"\1[masqué]", record.msg)
        return True


def install_redaction() -> None:
    # Outgoing calls (back-channel logouts) are logged by our own code when they fail; httpx's own
    # INFO line per request is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn.access", "uvicorn.error", "convergences", "httpx"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
