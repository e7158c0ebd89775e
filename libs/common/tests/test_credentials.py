"""Password hashes and token secrets: argon2id at production cost, SHA-256 for tokens."""

import pytest

from pulmogate.common.credentials import (
    WeakPassword,
    hash_password,
    new_api_token,
    sha256_hex,
    verify_password,
)


def test_passwords_are_hashed_with_argon2id_at_production_cost_and_verified() -> None:
    hashed = hash_password("correct horse battery")

    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert "correct horse" not in hashed
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse batterY")
    assert hash_password("correct horse battery") != hashed  # salted


def test_an_account_without_a_password_never_matches() -> None:
    assert not verify_password("", "")
    assert not verify_password("", "not a password anyone has")


def test_short_passwords_are_refused_with_the_minimum() -> None:
    with pytest.raises(WeakPassword, match="at least 10 characters"):
        hash_password("short")


def test_tokens_are_random_and_stored_as_their_sha256() -> None:
    first, prefix = new_api_token()
    second, _ = new_api_token()

    assert first != second and first.startswith("pgt_") and first.startswith(prefix)
    assert len(sha256_hex(first)) == 64 and sha256_hex(first) != sha256_hex(second)
