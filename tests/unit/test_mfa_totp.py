"""TOTP window and replay, recovery codes, device keys, step-up window: the pure functions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from cryptography.exceptions import InvalidTag

from convergences.mfa import totp
from convergences.mfa.devices import describe, device_key, network
from convergences.security.models import LoginSession
from convergences.security.stepup import STEP_UP_WINDOW, is_recent, reauth_url

NOW = datetime(2026, 11, 26, 5, 0, 10, tzinfo=UTC)
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def code_at(offset_steps: int) -> str:
    return pyotp.TOTP(SECRET).generate_otp(totp.step_at(NOW) + offset_steps)


def test_a_code_is_accepted_within_one_step_either_side_only() -> None:
    current = totp.step_at(NOW)
    for offset in (-1, 0, 1):
        assert totp.matching_step(SECRET, code_at(offset), None, NOW) == current + offset
    for offset in (-3, -2, 2, 3):
        assert totp.matching_step(SECRET, code_at(offset), None, NOW) is None
    assert totp.matching_step(SECRET, "12345", None, NOW) is None
    assert totp.matching_step(SECRET, "abcdef", None, NOW) is None


def test_a_code_is_never_accepted_twice_nor_an_older_one() -> None:
    current = totp.step_at(NOW)
    assert totp.matching_step(SECRET, code_at(0), current, NOW) is None  # replay within its window
    assert totp.matching_step(SECRET, code_at(-1), current, NOW) is None  # older than the last used
    assert totp.matching_step(SECRET, code_at(1), current, NOW) == current + 1  # a newer one still works
    assert totp.matching_step(SECRET, " ".join(code_at(0)[i:i + 3] for i in (0, 3)), None, NOW) == current


def test_secret_encryption_round_trip_and_key_binding() -> None:
    blob = totp.encrypt_secret("k" * 40, SECRET)
    assert SECRET not in blob and totp.decrypt_secret("k" * 40, blob) == SECRET
    with pytest.raises(InvalidTag):
        totp.decrypt_secret("other" * 10, blob)


def test_recovery_codes_are_ten_random_codes_digested_after_normalisation() -> None:
    codes = totp.new_recovery_codes()
    assert len(codes) == 10 == len(set(codes))
    assert all(len(c) == 29 and c.count("-") == 5 for c in codes)
    assert len(totp.normalize_recovery_code(codes[0])) * math.log2(31) >= 112  # ASVS 6.5.2: SHA-256 suffices
    code = codes[0]
    assert totp.recovery_digest(code) == totp.recovery_digest(code.upper().replace("-", " "))
    assert totp.recovery_digest(code) != totp.recovery_digest(codes[1])
    assert totp.looks_like_recovery_code(code) and not totp.looks_like_recovery_code("123456")


def test_qr_code_is_inline_svg() -> None:
    svg = totp.qr_svg(totp.provisioning_uri(SECRET, "a@b.example", "Convergences"))
    assert svg.startswith("<svg") and "data:" not in svg and "<script" not in svg


def test_device_description_and_key() -> None:
    firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:130.0) Gecko/20100101 Firefox/130.0"
    chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
    assert describe(firefox) == "Firefox sur Windows" and describe(chrome) == "Chrome sur Linux"
    assert describe(None) == "Appareil inconnu"
    assert network("192.0.2.17") == "192.0.2.0/24" and network("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert device_key(firefox, "192.0.2.17") == device_key(firefox, "192.0.2.200")
    assert device_key(firefox, "192.0.2.17") != device_key(chrome, "192.0.2.17")
    assert device_key(firefox, "192.0.2.17") != device_key(firefox, "198.51.100.17")


def test_step_up_window_is_ten_minutes() -> None:
    session = LoginSession(authenticated_at=NOW)
    assert STEP_UP_WINDOW == timedelta(minutes=10)
    assert is_recent(session, NOW + timedelta(minutes=9, seconds=59))
    assert not is_recent(session, NOW + timedelta(minutes=10, seconds=1))
    assert reauth_url("/compte/x?a=1") == "/compte/reauthentification?next=%2Fcompte%2Fx%3Fa%3D1"
