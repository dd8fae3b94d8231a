"""Domain errors raised by services and rendered as French pages or messages by the web layer."""

from __future__ import annotations


class ServiceError(Exception):
    """A business rule refused the action; ``message`` is French and shown to the user."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(Exception):
    """No such object within the actor's reach (also used where existence must not leak)."""


class FormInvalid(Exception):
    """The form has errors; raised by a service only after the actor's permission was checked."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors
