"""Password hashing (argon2id, off the loop, bounded) and the password policy."""

from __future__ import annotations

import asyncio
import os
import re
import threading

import pytest
from argon2 import PasswordHasher, Type

from convergences.security.passwords import PasswordService, password_problems
from convergences.settings import PasswordSettings

DEFAULTS = PasswordSettings()
HASH_RE = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")


def params(stored: str) -> tuple[int, int, int]:
    match = HASH_RE.match(stored)
    assert match, stored
    return int(match[1]), int(match[2]), int(match[3])


@pytest.fixture(scope="module")
def service() -> PasswordService:
    return PasswordService(PasswordSettings())


async def test_default_hash_is_argon2id_with_owasp_minimum(service: PasswordService) -> None:
    stored = await service.hash("une phrase de passe assez longue")
    m, t, p = params(stored)
    assert m >= 19456 and t >= 2 and p >= 1
    assert (m, t, p) == (19456, 2, 1)
    # A 128-bit (16-byte) salt at least: base64 without padding of 16 bytes is 22 characters.
    salt = stored.split("$")[4]
    assert len(salt) >= 22


async def test_salted_and_verifiable(service: PasswordService) -> None:
    a, b = await service.hash("même mot de passe ici"), await service.hash("même mot de passe ici")
    assert a != b
    assert await service.verify(a, "même mot de passe ici") == (True, None)
    assert await service.verify(a, "Même mot de passe ici") == (False, None)  # no case folding


async def test_long_passphrase_is_not_truncated(service: PasswordService) -> None:
    passphrase = "les cinq chats gris lisent le journal du matin sous la pluie douce!"
    assert len(passphrase) >= 65
    assert password_problems(passphrase, DEFAULTS) == []
    stored = await service.hash(passphrase)
    assert (await service.verify(stored, passphrase))[0]
    assert not (await service.verify(stored, passphrase[:64]))[0]
    altered = passphrase[:64] + ("?" if passphrase[64] != "?" else "!") + passphrase[65:]
    assert not (await service.verify(stored, altered))[0]
    longer = "x" * 300 + "fin"
    stored = await service.hash(longer)
    assert not (await service.verify(stored, "x" * 300 + "fim"))[0]


async def test_unknown_account_and_broken_hash_fail(service: PasswordService) -> None:
    assert await service.verify(None, "convergences-dummy-password") == (False, None)
    assert await service.verify("not-a-hash", "whatever") == (False, None)


async def test_rehash_when_parameters_change() -> None:
    old = PasswordService(PasswordSettings(memory_kib=8 * 1024, time_cost=1))
    stored = await old.hash("une phrase de passe assez longue")
    current = PasswordService(PasswordSettings())
    valid, new_hash = await current.verify(stored, "une phrase de passe assez longue")
    assert valid and new_hash is not None
    assert params(new_hash) == (19456, 2, 1)
    assert await current.verify(new_hash, "une phrase de passe assez longue") == (True, None)
    # A wrong password never yields a new hash.
    assert await current.verify(stored, "autre chose encore") == (False, None)


async def test_hashing_runs_off_the_loop_with_one_slot_per_core() -> None:
    service = PasswordService(PasswordSettings())
    assert service._slots._value == (os.cpu_count() or 1)
    loop_thread = threading.get_ident()
    seen: list[int] = []

    class SpyHasher(PasswordHasher):
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            seen.append(threading.get_ident())
            return super().hash(password, salt=salt)

        def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
            seen.append(threading.get_ident())
            return super().verify(hash, password)

    service.hasher = SpyHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    stored = await service.hash("une phrase de passe assez longue")
    assert (await service.verify(stored, "une phrase de passe assez longue"))[0]
    task.cancel()
    assert len(seen) == 2 and all(ident != loop_thread for ident in seen)
    # While argon2 ran in a thread, the loop kept serving other coroutines.
    assert ticks > 2


def test_minimum_length_twelve() -> None:
    problems = password_problems("court2026!x", DEFAULTS)  # 11 characters
    assert len(problems) == 1
    assert "au moins 12 caractères" in problems[0] and "il en contient 11" in problems[0]
    assert password_problems("tulipe verte", DEFAULTS) == []  # exactly 12, no composition rules


def test_no_composition_rules() -> None:
    assert password_problems("ceci est tout en minuscules sans chiffre", DEFAULTS) == []


@pytest.mark.parametrize("common", ["password1234", "123456789012", "azertyuiopqs", "iloveyou1234"])
def test_common_passwords_refused(common: str) -> None:
    problems = password_problems(common, DEFAULTS)
    assert problems and "mots de passe courants ou divulgués" in problems[0]


def test_too_long_refused() -> None:
    problems = password_problems("a" * 1025, DEFAULTS)
    assert problems == ["Le mot de passe ne doit pas dépasser 1024 caractères."]


CONTEXT = ["Nora", "Lefèvre", "nora.lefevre@mairie-bellerive.fr", "Commune de Bellerive-sur-Marne"]
CONTEXT_MESSAGE = ("Le mot de passe ne doit pas contenir votre nom, votre adresse électronique ni le nom de "
                   "votre employeur.")


@pytest.mark.parametrize("password", [
    "nora aime les tulipes",        # given name
    "LEFEVRE pour toujours 7",      # family name, case and accents folded
    "Lefèvre-2026-au-bureau",       # with its accent
    "bienvenue à bellerive 2026",   # employer name
    "la marne coule doucement",     # part of the employer name
    "nora.lefevre@mairie-bellerive.fr",  # the email itself
])
def test_context_words_refused(password: str) -> None:
    assert password_problems(password, DEFAULTS, context=CONTEXT) == [CONTEXT_MESSAGE]


def test_context_free_password_accepted() -> None:
    assert password_problems("cinq chats lisent le journal", DEFAULTS, context=CONTEXT) == []
    # Short context parts (< 4 letters, like "de") do not forbid ordinary words.
    assert password_problems("de grandes vacances estivales", DEFAULTS, context=CONTEXT) == []
