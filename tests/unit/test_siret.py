"""SIRET checks: 14 digits and a valid Luhn key (siret_problem), with an independent Luhn here."""

from __future__ import annotations

import pytest

from convergences.employers.siret import normalize_siret, siret_problem, with_luhn_key
from convergences.seed import EMPLOYERS


def reference_luhn(digits: str) -> bool:
    # Written independently of the code under test: double every second digit from the right.
    checksum = 0
    for position, char in enumerate(digits[::-1], start=1):
        n = int(char) * (2 if position % 2 == 0 else 1)
        checksum += n // 10 + n % 10
    return checksum % 10 == 0


VALID = ["21930999900015", "73282932000074", "35600000000048", "44306184100047"]


@pytest.mark.parametrize("siret", VALID + [e["siret"] for e in EMPLOYERS])
def test_valid_sirets_are_accepted(siret: str) -> None:
    assert reference_luhn(siret)
    assert siret_problem(siret) is None


def test_spaces_are_tolerated() -> None:
    assert normalize_siret(" 219 309 999 00015 ") == "21930999900015"
    assert siret_problem("219 309 999 00015") is None


def test_empty_siret_is_required() -> None:
    assert siret_problem("") == "Le SIRET est obligatoire."
    assert siret_problem("   ") == "Le SIRET est obligatoire."


@pytest.mark.parametrize("raw", ["2193099990001", "219309999000150", "2193099990001A", "21930-99990001",
                                 # Unicode digits: full-width (isdigit() is true) and superscript (int() fails).
                                 "２１９３０９９９９０００１５", "2193099990001²"])
def test_wrong_length_or_non_digits(raw: str) -> None:
    assert siret_problem(raw) == "Le SIRET doit comporter exactement 14 chiffres."


def test_every_single_digit_typo_is_caught() -> None:
    valid = "21930999900015"
    for index in range(14):
        for digit in "0123456789":
            if digit == valid[index]:
                continue
            typo = valid[:index] + digit + valid[index + 1:]
            problem = siret_problem(typo)
            assert problem is not None and "clé de contrôle" in problem, typo


def test_adjacent_swap_is_caught() -> None:
    # Luhn catches most transpositions of adjacent digits (not 09/90).
    assert siret_problem("12930999900015") is not None


def test_with_luhn_key_completes_thirteen_digits() -> None:
    for prefix in ["2193099990001", "1234567890123", "0000000000000", "9999999999999"]:
        siret = with_luhn_key(prefix)
        assert siret.startswith(prefix) and len(siret) == 14
        assert reference_luhn(siret)
        assert siret_problem(siret) is None
