"""License keys: Ed25519 signatures, tampering, foreign keys, expiry and the warning window."""

import base64
from datetime import date

import pytest
from cryptography.hazmat.primitives import serialization

from pulmogate.common.licensing import (
    LicenseError,
    LicenseFields,
    LicenseState,
    evaluate,
    generate_private_key,
    issue_license,
    load_private_key,
    private_key_pem,
    public_key_text,
    verify_license,
)

VENDOR = generate_private_key()
PUBLIC = public_key_text(VENDOR)
FIELDS = LicenseFields(
    product="pulmogate",
    licensee="City Hospital No. 1",
    issued=date(2026, 1, 1),
    expires=date(2026, 12, 31),
    studies_per_day=200,
)


def test_an_issued_key_verifies_and_carries_its_fields() -> None:
    key = issue_license(VENDOR, FIELDS)

    assert key.startswith("-----BEGIN PULMOGATE LICENSE-----\n")
    assert verify_license(key, PUBLIC) == FIELDS


def test_a_key_reflowed_by_an_email_client_still_verifies() -> None:
    key = issue_license(VENDOR, FIELDS)
    body = "".join(line for line in key.splitlines() if not line.startswith("-----"))

    assert verify_license("  " + " \r\n ".join([body[:30], body[30:]]) + "\n", PUBLIC) == FIELDS


def parts(key: str) -> list[str]:
    """PGL1, payload and signature of an armored key."""
    return "".join(ln for ln in key.splitlines() if not ln.startswith("-----")).split(".")


def test_a_changed_payload_fails_the_signature() -> None:
    tag, payload, signature = parts(issue_license(VENDOR, FIELDS))
    forged = FIELDS.payload().replace(b"2026-12-31", b"2099-12-31")
    forged_b64 = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()

    with pytest.raises(LicenseError, match="signature does not verify"):
        verify_license(f"{tag}.{forged_b64}.{signature}", PUBLIC)
    assert payload != forged_b64


def test_a_key_signed_by_another_vendor_is_refused() -> None:
    key = issue_license(generate_private_key(), FIELDS)

    with pytest.raises(LicenseError, match="signature does not verify"):
        verify_license(key, PUBLIC)


def test_another_products_key_and_garbage_are_refused_with_reasons() -> None:
    other = LicenseFields("radiogate", "X", date(2026, 1, 1), date(2026, 12, 31))

    with pytest.raises(LicenseError, match="for 'radiogate', not 'pulmogate'"):
        verify_license(issue_license(VENDOR, other), PUBLIC)
    with pytest.raises(LicenseError, match="not a PulmoGate license key"):
        verify_license("hello", PUBLIC)


def test_the_public_key_may_be_given_as_pem() -> None:
    pem = (
        VENDOR.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )

    assert verify_license(issue_license(VENDOR, FIELDS), pem) == FIELDS
    with pytest.raises(LicenseError, match="not an Ed25519 public key"):
        verify_license(issue_license(VENDOR, FIELDS), "bm90IGEga2V5")


def test_the_private_key_round_trips_through_pem() -> None:
    again = load_private_key(private_key_pem(VENDOR))

    assert public_key_text(again) == PUBLIC


@pytest.mark.parametrize(
    ("today", "state", "message"),
    [
        (date(2026, 6, 1), LicenseState.VALID, "licensed until 2026-12-31"),
        (date(2026, 12, 16), LicenseState.VALID, "licensed until 2026-12-31"),
        (date(2026, 12, 17), LicenseState.WARNING, "expires on 2026-12-31 (14 days left)"),
        (date(2026, 12, 31), LicenseState.WARNING, "(0 days left)"),
        (date(2027, 1, 1), LicenseState.EXPIRED, "license expired on 2026-12-31"),
        (date(2025, 12, 31), LicenseState.INVALID, "the license starts on 2026-01-01"),
    ],
)
def test_state_by_date_with_a_14_day_warning_window(
    today: date, state: LicenseState, message: str
) -> None:
    status = evaluate(issue_license(VENDOR, FIELDS), PUBLIC, today, warning_days=14)

    assert status.state == state and message in status.message


def test_no_key_installed_no_public_key_configured_and_a_tampered_install() -> None:
    key = issue_license(VENDOR, FIELDS)

    assert evaluate(None, PUBLIC, date(2026, 6, 1)).state == LicenseState.NONE
    community = evaluate(None, "", date(2026, 6, 1))
    assert community.state == LicenseState.COMMUNITY
    tag, payload, signature = parts(key)
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    tampered = evaluate(f"{tag}.{payload}.{flipped}", PUBLIC, date(2026, 6, 1))
    assert tampered.state == LicenseState.INVALID
