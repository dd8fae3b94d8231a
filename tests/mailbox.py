"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for the tests to read."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Handler:
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


class Mailbox:
    def __init__(self, controller: Controller, handler: _Handler, port: int) -> None:
        self.controller, self.handler, self.port = controller, handler, port

    @classmethod
    def start(cls) -> Mailbox:
        handler = _Handler()
        port = _free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        return cls(controller, handler, port)

    def stop(self) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages

    def to(self, recipient: str) -> list[EmailMessage]:
        return [m for m in self.messages if recipient.lower() in str(m["To"]).lower()]

    async def wait_for(self, recipient: str, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:  # noqa: ASYNC109
        import asyncio

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(recipient)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no mail for {recipient} within {timeout}s (got {len(self.to(recipient))})")


def text_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def invitation_path(message: EmailMessage) -> str:
    match = re.search(r"https?://[^/\s]+(/invitation/[^\s]+)", text_body(message))
    assert match, "no invitation link in the mail"
    return match.group(1)
