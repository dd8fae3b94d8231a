"""The authorization matrix: what each role may do, where, and nothing across employers."""

from __future__ import annotations

import pytest

from convergences.authz import (
    GLOBAL_PERMISSIONS,
    ROLE_PERMISSIONS,
    Actor,
    NotAuthorized,
    Permission,
    employers_with,
    may,
    require,
)

P = Permission
EMPLOYER_PERMISSIONS = [P.EMPLOYER_VIEW, P.ACCOUNTS_VIEW, P.ACCOUNTS_MANAGE, P.GRANTS_MANAGE,
                        P.INVITATIONS_RESEND, P.REFERENTS_DESIGNATE, P.JOURNAL_VIEW, P.ACCOUNTS_SECURITY]

# The expected matrix, written out by hand from the product rules (not derived from the code).
EXPECTED: dict[str, set[Permission]] = {
    "agent": set(),
    "referent": {P.EMPLOYER_VIEW, P.ACCOUNTS_VIEW, P.ACCOUNTS_MANAGE, P.GRANTS_MANAGE, P.INVITATIONS_RESEND,
                 P.JOURNAL_VIEW, P.ACCOUNTS_SECURITY},
    "authority": {P.EMPLOYER_VIEW, P.ACCOUNTS_VIEW, P.REFERENTS_DESIGNATE, P.JOURNAL_VIEW},
    "correspondent": {P.EMPLOYER_VIEW, P.ACCOUNTS_VIEW, P.INVITATIONS_RESEND, P.REFERENTS_DESIGNATE,
                      P.JOURNAL_VIEW, P.ACCOUNTS_SECURITY},
    "cig_admin": set(EMPLOYER_PERMISSIONS),
}


def member(roles: set[str], employer_id: int = 1) -> Actor:
    return Actor(account_id=10, label="X <x@example.org>", email="x@example.org",
                 memberships={employer_id: frozenset({"agent"} | roles)})


def test_matrix_table_matches_the_rules() -> None:
    for role, expected in EXPECTED.items():
        granted = {p for p in EMPLOYER_PERMISSIONS if p in ROLE_PERMISSIONS[role]}
        assert granted == expected, role


@pytest.mark.parametrize("role", ["agent", "referent", "authority"])
@pytest.mark.parametrize("permission", EMPLOYER_PERMISSIONS)
def test_member_roles_at_their_employer(role: str, permission: Permission) -> None:
    actor = member({role} - {"agent"})
    assert may(actor, permission, 1) is (permission in EXPECTED[role])


@pytest.mark.parametrize("role", ["agent", "referent", "authority"])
@pytest.mark.parametrize("permission", EMPLOYER_PERMISSIONS)
def test_nothing_reaches_another_employer(role: str, permission: Permission) -> None:
    actor = member({role} - {"agent"}, employer_id=1)
    assert may(actor, permission, 2) is False
    with pytest.raises(NotAuthorized):
        require(actor, permission, 2)


def test_referent_and_authority_combined() -> None:
    actor = member({"referent", "authority"})
    for permission in EMPLOYER_PERMISSIONS:
        assert may(actor, permission, 1) is (permission in EXPECTED["referent"] | EXPECTED["authority"])


@pytest.mark.parametrize("permission", EMPLOYER_PERMISSIONS)
def test_correspondent_only_within_portfolio(permission: Permission) -> None:
    actor = Actor(account_id=2, label="C", email="c@cig.example", is_correspondent=True, portfolio=frozenset({1}))
    assert may(actor, permission, 1) is (permission in EXPECTED["correspondent"])
    assert may(actor, permission, 2) is False


def test_correspondent_does_not_run_accounts_or_rights() -> None:
    actor = Actor(account_id=2, label="C", email="c@cig.example", is_correspondent=True, portfolio=frozenset({1}))
    assert not may(actor, P.ACCOUNTS_MANAGE, 1)
    assert not may(actor, P.GRANTS_MANAGE, 1)


@pytest.mark.parametrize("permission", list(Permission))
def test_cig_admin_may_everything_everywhere(permission: Permission) -> None:
    actor = Actor(account_id=1, label="A", email="a@cig.example", is_cig_admin=True)
    assert may(actor, permission, 1) and may(actor, permission, 999)
    assert may(actor, permission)


def test_global_permissions() -> None:
    correspondent = Actor(account_id=2, label="C", email="c@cig.example", is_correspondent=True)
    assert may(correspondent, P.PROGRESS_VIEW)
    for permission in [P.EMPLOYERS_MANAGE, P.CATALOGUE_MANAGE, P.PORTFOLIOS_MANAGE, P.CIG_JOURNAL_VIEW]:
        assert not may(correspondent, permission)
    referent = member({"referent", "authority"})
    for permission in Permission:
        assert not may(referent, permission), permission
    assert set(GLOBAL_PERMISSIONS) == {"cig_admin", "correspondent"}


def test_no_actor_may_nothing() -> None:
    for permission in Permission:
        assert not may(None, permission, 1)
        assert not may(None, permission)
        with pytest.raises(NotAuthorized):
            require(None, permission, 1)


def test_require_returns_the_actor_and_employers_with_filters() -> None:
    actor = Actor(account_id=3, label="R", email="r@example.org",
                  memberships={1: frozenset({"agent", "referent"}), 2: frozenset({"agent"}),
                               3: frozenset({"agent", "authority"})})
    assert require(actor, P.ACCOUNTS_MANAGE, 1) is actor
    assert employers_with(actor, P.ACCOUNTS_MANAGE, [1, 2, 3, 4]) == [1]
    assert employers_with(actor, P.REFERENTS_DESIGNATE, [1, 2, 3, 4]) == [3]
    assert employers_with(actor, P.EMPLOYER_VIEW, [1, 2, 3, 4]) == [1, 3]
    assert actor.admin_employers() == [1, 3]
    assert actor.roles == {"agent", "referent", "authority"}
