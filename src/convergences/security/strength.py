"""The password meter: a French verdict and its reasons, from the same policy that accepts or refuses.

Informative only beyond the policy (:func:`convergences.security.passwords.password_problems`): no
composition rule is ever imposed (ASVS 6.2.5). The estimate follows the CNIL's reading (délibération
2022-100): about 80 bits for a password alone is strong; long passphrases get there by length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from convergences.security.passwords import password_problems
from convergences.settings import PasswordSettings

LEVELS = {0: "Vide", 1: "Refusé", 2: "Acceptable", 3: "Fort", 4: "Très fort"}


@dataclass(frozen=True)
class Verdict:
    level: int  # 0 empty, 1 refused, 2 acceptable, 3 strong, 4 very strong
    reasons: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return LEVELS[self.level]

    @property
    def accepted(self) -> bool:
        return self.level >= 2


def estimate_bits(password: str) -> float:
    """A rough entropy estimate: distinct characters used × length, repeated runs counted once."""
    pool = 0
    if any(c.islower() for c in password):
        pool += 26
    if any(c.isupper() for c in password):
        pool += 26
    if any(c.isdigit() for c in password):
        pool += 10
    if any(not c.isalnum() for c in password):
        pool += 33
    # "aaaaaaaaaaaa" is not twelve characters of entropy: collapse runs of the same character.
    effective = sum(1 for i, c in enumerate(password) if i == 0 or c != password[i - 1])
    distinct = len(set(password))
    return effective * math.log2(max(pool, 2)) * min(1.0, distinct / 8)


def evaluate(password: str, settings: PasswordSettings, context: list[str]) -> Verdict:
    if not password:
        return Verdict(0, [f"Au moins {settings.min_length} caractères ; une phrase de plusieurs mots est idéale."])
    problems = password_problems(password, settings, context=context)
    if problems:
        return Verdict(1, problems)
    bits = estimate_bits(password)
    if bits >= 100:
        return Verdict(4, ["Excellent : ce mot de passe sera très difficile à deviner."])
    if bits >= 80:
        return Verdict(3, ["Bon mot de passe."])
    return Verdict(2, ["Accepté. Pour le renforcer, allongez-le : ajoutez un ou deux mots."])
