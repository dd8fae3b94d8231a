"""SIRET checks: 14 digits with a valid Luhn key (INSEE)."""

from __future__ import annotations


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def normalize_siret(raw: str) -> str:
    return "".join(raw.split())


def siret_problem(raw: str) -> str | None:
    """A French message when the SIRET is not valid, else None."""
    siret = normalize_siret(raw)
    if not siret:
        return "Le SIRET est obligatoire."
    if not (siret.isascii() and siret.isdigit()) or len(siret) != 14:
        return "Le SIRET doit comporter exactement 14 chiffres."
    if not luhn_valid(siret):
        return "Ce SIRET n'est pas valide (clé de contrôle incorrecte) : vérifiez la saisie."
    return None


def with_luhn_key(prefix13: str) -> str:
    """Complete 13 digits with the check digit (used by the demo seed and the tests)."""
    for key in range(10):
        if luhn_valid(prefix13 + str(key)):
            return prefix13 + str(key)
    raise ValueError(prefix13)
