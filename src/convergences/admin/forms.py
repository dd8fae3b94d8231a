"""Forms of the CIG admin screens (parse, then ``validate()`` into per-field French messages)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from convergences.admin.clients import ClientInput
from convergences.forms import NAME_RE, PersonForm, url_problem
from convergences.oidc.keys import ALGORITHMS
from convergences.oidc.models import Client
from convergences.web import text

PHONE_RE = re.compile(r"^[0-9+() .-]{6,30}$")


@dataclass
class CorrespondentForm(PersonForm):
    """A correspondent: the person, plus the optional phone shown to the employers they support."""

    phone: str = ""

    @classmethod
    def parse(cls, form: Any) -> CorrespondentForm:
        person = PersonForm.parse(form)
        return cls(person.given_name, person.family_name, person.email, text(form, "phone", 30))

    def validate(self) -> dict[str, str]:
        errors = super().validate()
        if self.phone and not PHONE_RE.match(self.phone):
            errors["phone"] = "Saisissez un numéro de téléphone valide, par exemple 01 56 96 80 80."
        return errors


# The Convergences claims an application may receive, with their French labels.
CLIENT_CLAIMS = {"employer": "Employeur (SIRET et nom)", "roles": "Rôle applicatif"}
MAX_URIS = 20
MAX_URI_LENGTH = 500


def _raw(form: Any, name: str) -> str:
    """A field as typed (surrounding blanks removed), not truncated: the length is checked instead."""
    value = form.get(name, "")
    if isinstance(value, list):
        value = value[-1] if value else ""
    return str(value).strip()


def _checked(form: Any, name: str) -> bool:
    return text(form, name, 10).lower() in {"1", "on", "true", "oui"}


def _values(form: Any, name: str) -> list[str]:
    values = form.get(name, [])
    return [str(v) for v in (values if isinstance(values, list) else [values])]


def _uri_problem(uri: str, label: str) -> str | None:
    if len(uri) > MAX_URI_LENGTH:
        return f"{label} « {uri[:60]}… » dépasse {MAX_URI_LENGTH} caractères."
    if any(c.isspace() for c in uri):
        return f"{label} « {uri} » contient des espaces."
    problem = url_problem(uri)
    if problem:
        return f"{label} « {uri} » : {problem}"
    if urlsplit(uri).fragment or uri.endswith("#"):
        return f"{label} « {uri} » ne doit pas contenir de fragment (#…)."
    return None


@dataclass
class ClientForm:
    """An OpenID Connect client: redirect URIs one per line, kept exactly as typed (the provider compares
    them as strings); the secret is never part of the form."""

    name: str = ""
    redirect_text: str = ""
    post_logout_text: str = ""
    backchannel_logout_uri: str = ""
    public: bool = False
    alg: str = "ES256"
    allow_refresh: bool = False
    claims: list[str] = field(default_factory=lambda: list(CLIENT_CLAIMS))
    pairwise: bool = False

    @classmethod
    def parse(cls, form: Any) -> ClientForm:
        return cls(_raw(form, "name"), _raw(form, "redirect_uris"), _raw(form, "post_logout_redirect_uris"),
                   _raw(form, "backchannel_logout_uri"), _checked(form, "public"), text(form, "alg", 10),
                   _checked(form, "allow_refresh"), [c for c in CLIENT_CLAIMS if c in _values(form, "claims")],
                   _checked(form, "pairwise"))

    @classmethod
    def of(cls, client: Client) -> ClientForm:
        return cls(client.name, "\n".join(client.redirect_uris), "\n".join(client.post_logout_redirect_uris),
                   client.backchannel_logout_uri or "", client.is_public, client.id_token_alg, client.allow_refresh,
                   [c for c in CLIENT_CLAIMS if c in client.claims], client.pairwise_sub)

    @staticmethod
    def _lines(value: str) -> list[str]:
        return list(dict.fromkeys(line.strip() for line in value.splitlines() if line.strip()))

    @property
    def redirect_uris(self) -> list[str]:
        return self._lines(self.redirect_text)

    @property
    def post_logout_redirect_uris(self) -> list[str]:
        return self._lines(self.post_logout_text)

    def validate(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        if len(self.name) > 120 or (self.name and not NAME_RE.match(self.name)):
            errors["name"] = "Le nom contient des caractères non autorisés ou dépasse 120 caractères."
        uris = self.redirect_uris
        if not uris:
            errors["redirect_uris"] = "Saisissez au moins une adresse de retour (une par ligne)."
        elif len(uris) > MAX_URIS:
            errors["redirect_uris"] = f"Au plus {MAX_URIS} adresses de retour."
        else:
            problem = next(filter(None, (_uri_problem(u, "L'adresse de retour") for u in uris)), None)
            if problem:
                errors["redirect_uris"] = problem
        logout = self.post_logout_redirect_uris
        if len(logout) > MAX_URIS:
            errors["post_logout_redirect_uris"] = f"Au plus {MAX_URIS} adresses après déconnexion."
        else:
            problem = next(filter(None, (_uri_problem(u, "L'adresse") for u in logout)), None)
            if problem:
                errors["post_logout_redirect_uris"] = problem
        if self.backchannel_logout_uri:
            problem = _uri_problem(self.backchannel_logout_uri, "L'adresse de déconnexion")
            if problem:
                errors["backchannel_logout_uri"] = problem
        if self.alg not in ALGORITHMS:
            errors["alg"] = "Choisissez l'algorithme de signature dans la liste (ES256 ou RS256)."
        return errors

    def input(self) -> ClientInput:
        return ClientInput(self.name, self.redirect_uris, self.post_logout_redirect_uris,
                           self.backchannel_logout_uri or None, self.public, self.alg, self.allow_refresh,
                           list(self.claims), self.pairwise)
