"""Secrets for people and clients: argon2 password hashes, random tokens stored as SHA-256."""

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pulmogate.common import password_policy
from pulmogate.common.password_policy import WeakPassword

MIN_PASSWORD_LENGTH = password_policy.MIN_LENGTH
TOKEN_PREFIX = "pgt_"

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password anyone has")

__all__ = ["WeakPassword"]


def check_password_strength(password: str, username: str = "") -> None:
    """Refuse a weak password with the reason (``password_policy``)."""
    password_policy.check(password, username)


def hash_password(password: str, username: str = "") -> str:
    """An argon2id hash with its parameters and salt, of a password the policy accepts."""
    check_password_strength(password, username)
    return _hasher.hash(password)


def rehash_password(password: str) -> str:
    """A fresh hash of a password that was just verified (stronger parameters; no policy:
    a password set under an older policy must not lock its owner out)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches; an empty hash (no password set) never matches.

    Unknown users are checked against a dummy hash so both answers take as long.
    """
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)


def sha256_hex(secret: str) -> str:
    """How a token or session secret is stored: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_token() -> tuple[str, str]:
    """A fresh bearer token and the prefix shown in listings (the token is shown once)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token[: len(TOKEN_PREFIX) + 6]


def new_secret() -> str:
    """A random URL-safe secret (session cookies, CSRF tokens)."""
    return secrets.token_urlsafe(32)


def same_secret(a: str, b: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a.encode(), b.encode())
