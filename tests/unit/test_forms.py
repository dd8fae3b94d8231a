"""Form dataclasses: parsing and per-field French validation messages."""

from __future__ import annotations

from convergences.forms import ApplicationForm, EmployerForm, PersonForm, email_problem, name_problem


def test_person_form_valid_and_normalised() -> None:
    form = PersonForm.parse({"given_name": "  Nora ", "family_name": "Lefèvre-Dupont", "email": " Nora.L@Mairie.FR "})
    assert (form.given_name, form.family_name, form.email) == ("Nora", "Lefèvre-Dupont", "nora.l@mairie.fr")
    assert form.validate() == {}


def test_person_form_everything_missing() -> None:
    errors = PersonForm.parse({}).validate()
    assert errors == {"given_name": "Le prénom est obligatoire.",
                      "family_name": "Le nom est obligatoire.",
                      "email": "L'adresse électronique est obligatoire."}


def test_person_form_bad_values() -> None:
    errors = PersonForm("<script>", "Du\x00pont", "pas-une-adresse").validate()
    assert errors["given_name"] == "Le prénom contient des caractères non autorisés."
    assert errors["family_name"] == "Le nom contient des caractères non autorisés."
    assert errors["email"].startswith("Saisissez une adresse électronique valide")


def test_person_form_last_value_of_a_repeated_field() -> None:
    form = PersonForm.parse({"given_name": ["Anne", "Marie"], "family_name": "Durand", "email": "a@b.fr"})
    assert form.given_name == "Marie"


def test_email_problem_cases() -> None:
    assert email_problem("prenom.nom@mairie-exemple.fr") is None
    assert email_problem("a+tag@sub.domaine.fr") is None
    for bad in ["sans-arobase", "a@b", "a@@b.fr", "a b@c.fr", "a@-b.fr", "a@b.fr\nBcc: x@y.fr",
                "x" * 250 + "@b.fr"]:
        assert email_problem(bad) is not None, bad


def test_name_problem_limits() -> None:
    assert name_problem("Jean-Édouard d'Ormesson", "nom") is None
    assert name_problem("x" * 101, "nom") == "Le nom contient des caractères non autorisés."
    assert name_problem("a@b", "nom") is not None
    assert name_problem("ligne\nsuivante", "nom") is not None


def test_employer_form() -> None:
    form = EmployerForm.parse({"name": "Commune de Test", "siret": "219 309 999 00015", "kind": "commune"})
    assert form.siret == "21930999900015"
    assert form.validate() == {}
    errors = EmployerForm.parse({"name": "", "siret": "21930999900016", "kind": "royaume"}).validate()
    assert errors == {"name": "Le nom de l'employeur est obligatoire.",
                      "siret": "Ce SIRET n'est pas valide (clé de contrôle incorrecte) : vérifiez la saisie.",
                      "kind": "Choisissez le type d'employeur dans la liste."}
    assert EmployerForm.parse({"name": "X", "siret": "123", "kind": "ccas"}).validate() == {
        "siret": "Le SIRET doit comporter exactement 14 chiffres."}


def test_application_form() -> None:
    form = ApplicationForm.parse({"slug": "Net-Cotisations", "name": "Net Cotisations",
                                  "launch_url": "https://nc.example/", "roles": "consultation:Consultation\n\nsaisie"})
    assert form.slug == "net-cotisations"
    assert form.roles == [{"code": "consultation", "label": "Consultation"}, {"code": "saisie", "label": "saisie"}]
    assert form.validate() == {}
    errors = ApplicationForm.parse({"slug": "pas bon", "name": "", "launch_url": "javascript:alert(1)",
                                    "roles": "a:A\na:B"}).validate()
    assert set(errors) == {"slug", "name", "launch_url", "roles"}
    assert errors["launch_url"].startswith("Saisissez une adresse web complète")
    assert "codes distincts" in errors["roles"]
    assert "launch_url" in ApplicationForm("ok", "Ok", "", "ftp://x.example/", "").validate()
