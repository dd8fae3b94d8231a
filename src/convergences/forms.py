"""Form dataclasses shared by the domains: parse, then ``validate()`` into per-field French messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from convergences.employers.models import EMPLOYER_KINDS
from convergences.employers.siret import normalize_siret, siret_problem
from convergences.web import text

EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
NAME_RE = re.compile(r"^[^\x00-\x1f<>\"@;{}]+$")
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def email_problem(value: str) -> str | None:
    if not value:
        return "L'adresse électronique est obligatoire."
    if len(value) > 254 or not EMAIL_RE.match(value):
        return "Saisissez une adresse électronique valide, par exemple prenom.nom@mairie-exemple.fr."
    return None


def name_problem(value: str, label: str) -> str | None:
    if not value:
        return f"Le {label} est obligatoire."
    if len(value) > 100 or not NAME_RE.match(value):
        return f"Le {label} contient des caractères non autorisés."
    return None


def url_problem(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return "Saisissez une adresse web complète commençant par https:// (ou http:// en test)."
    return None


@dataclass
class PersonForm:
    given_name: str = ""
    family_name: str = ""
    email: str = ""

    @classmethod
    def parse(cls, form: Any) -> PersonForm:
        return cls(text(form, "given_name", 100), text(form, "family_name", 100), text(form, "email", 254).lower())

    def validate(self) -> dict[str, str]:
        errors = {"given_name": name_problem(self.given_name, "prénom"),
                  "family_name": name_problem(self.family_name, "nom"),
                  "email": email_problem(self.email)}
        return {k: v for k, v in errors.items() if v}


@dataclass
class EmployerForm:
    name: str = ""
    siret: str = ""
    kind: str = "commune"

    @classmethod
    def parse(cls, form: Any) -> EmployerForm:
        return cls(text(form, "name", 200), normalize_siret(text(form, "siret", 40)), text(form, "kind", 30))

    def validate(self) -> dict[str, str]:
        errors = {}
        if not self.name:
            errors["name"] = "Le nom de l'employeur est obligatoire."
        problem = siret_problem(self.siret)
        if problem:
            errors["siret"] = problem
        if self.kind not in EMPLOYER_KINDS:
            errors["kind"] = "Choisissez le type d'employeur dans la liste."
        return errors


@dataclass
class ApplicationForm:
    slug: str = ""
    name: str = ""
    description: str = ""
    launch_url: str = ""
    roles_text: str = ""

    @classmethod
    def parse(cls, form: Any) -> ApplicationForm:
        return cls(text(form, "slug", 60).lower(), text(form, "name", 120), text(form, "description", 1000),
                   text(form, "launch_url", 500), text(form, "roles", 2000))

    @property
    def roles(self) -> list[dict[str, str]]:
        roles = []
        for line in self.roles_text.splitlines():
            if not line.strip():
                continue
            code, _, label = line.partition(":")
            roles.append({"code": code.strip().lower(), "label": (label or code).strip()})
        return roles

    def validate(self) -> dict[str, str]:
        errors = {}
        if not SLUG_RE.match(self.slug):
            errors["slug"] = "L'identifiant ne contient que des minuscules, chiffres et tirets (ex. net-cotisations)."
        if not self.name:
            errors["name"] = "Le nom de l'application est obligatoire."
        problem = url_problem(self.launch_url)
        if problem:
            errors["launch_url"] = problem
        codes = [r["code"] for r in self.roles]
        if any(not SLUG_RE.match(c) for c in codes) or len(set(codes)) != len(codes):
            errors["roles"] = ("Un rôle par ligne, sous la forme code:Libellé (ex. saisie:Saisie), "
                               "codes distincts en minuscules.")
        return errors
