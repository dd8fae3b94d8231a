"""The password policy (CNIL 2022-100, ASVS 6.2) and the meter's verdicts."""

from __future__ import annotations

import pytest

from convergences.security.passwords import password_problems
from convergences.security.strength import estimate_bits, evaluate
from convergences.settings import PasswordSettings

S = PasswordSettings()
CONTEXT = ["Émilie", "Lefèvre-Dupont", "emilie.lefevre@mairie-bellerive.fr", "Commune de Bellerive-sur-Marne"]


def test_twelve_characters_minimum() -> None:
    assert password_problems("onze carac.", S)
    assert not password_problems("douze carac.", S)


@pytest.mark.parametrize("length", [64, 128, 512, 1024])
def test_long_passwords_accepted(length: int) -> None:
    assert not password_problems(("passphrase tres longue " * 60)[:length], S)


def test_beyond_the_maximum_refused_not_truncated() -> None:
    assert password_problems("x" * 1025 + " phrase", S) == ["Le mot de passe ne doit pas dépasser 1024 caractères."]


def test_no_composition_rules() -> None:
    # Only lowercase letters and spaces: fine when long and not common.
    assert not password_problems("le chat dort sur la commode bleue", S)


@pytest.mark.parametrize("password", ["password1234", "123456789012", "qwertyuiopasdf"])
def test_common_and_breached_passwords_refused(password: str) -> None:
    assert any("courants ou divulgués" in p for p in password_problems(password, S))


@pytest.mark.parametrize("password", ["emilie aime les tulipes", "EMILIE aime les tulipes", "les lefevre du 93 !",
                                      "Bellerive un jour toujours", "mon courriel emilie.lefevre ok"])
def test_context_words_refused_case_and_accent_insensitive(password: str) -> None:
    problems = password_problems(password, S, context=CONTEXT)
    assert any("votre nom" in p for p in problems), password


def test_unrelated_passphrase_with_context_accepted() -> None:
    assert not password_problems("quatre girafes traversent la Loire", S, context=CONTEXT)


def test_meter_levels() -> None:
    assert evaluate("", S, []).level == 0
    assert evaluate("trop court", S, []).label == "Refusé"
    assert evaluate("emilie aime les tulipes", S, CONTEXT).label == "Refusé"
    assert evaluate("Ab3$efgh!jkl", S, []).level >= 2
    assert evaluate("quatre girafes traversent la Loire", S, []).label == "Très fort"
    # A repeated character is not entropy: accepted by the policy if not listed, but never "strong".
    assert estimate_bits("aaaaaaaaaaaaaaaa") < 10
    assert all(r for r in evaluate("trop court", S, []).reasons)


def test_length_alone_does_not_make_a_repeated_character_strong() -> None:
    assert evaluate("a" * 40, S, []).level <= 2


@pytest.mark.parametrize("prefix", ["/invitation/", "/mot-de-passe/reinitialiser/", "/compte/adresse/confirmer/"])
def test_one_time_links_are_redacted_from_logs(prefix: str) -> None:
    import logging

    from convergences.logs import RedactSecrets

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s "GET %s HTTP/1.1" 200', (
        "127.0.0.1", prefix + "WzEsImFiYyJd.secret-token"), None)
    RedactSecrets().filter(record)
    assert "secret-token" not in record.getMessage() and prefix + "[masqué]" in record.getMessage()
