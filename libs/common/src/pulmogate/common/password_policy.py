"""What a password must not be: short, blank, one character, a pattern, or a common one.

Each refusal says why in a sentence, so a person can pick a better one. Length stays the
main defence (argon2id makes guessing slow); these checks refuse the passwords an attacker
tries first.
"""

import re
import string
from functools import lru_cache
from importlib.resources import files

MIN_LENGTH = 10
MIN_DISTINCT = 4
SEQUENCES = (
    string.digits + "0",
    string.ascii_lowercase,
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "qwertzuiop",
    "azertyuiop",
    "йцукенгшщзхъ",
    "фывапролджэ",
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
)
DECORATION = re.compile(r"^[\W\d_]*(?P<base>.*?)[\W\d_]*$")


class WeakPassword(ValueError):
    """A password too weak to protect an account (the message says why)."""


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords and base words (lower case)."""
    text = files("pulmogate.common").joinpath("common_passwords.txt").read_text("utf-8")
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


def _is_sequence(text: str) -> bool:
    """Consecutive characters of a keyboard row or the alphabet, forwards or backwards."""
    return any(text in seq or text in seq[::-1] for seq in SEQUENCES)


def _repeats_a_pattern(text: str) -> bool:
    """The whole text is a short unit repeated (``abcabcabca``, ``1234512345``)."""
    for size in range(1, len(text) // 2 + 1):
        unit = text[:size]
        if (unit * (len(text) // size + 1))[: len(text)] == text:
            return True
    return False


def _base(text: str) -> str:
    """The text without the digits and symbols around it (``Password2024!`` → password)."""
    match = DECORATION.match(text)
    return match.group("base") if match else text


def problem(password: str, username: str = "") -> str | None:
    """Why ``password`` is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"password must have at least {MIN_LENGTH} characters"
    if not password.strip():
        return "password must not be only spaces"
    lowered = password.lower()
    if len(set(lowered)) == 1:
        return "password must not be one character repeated"
    if len(set(lowered)) < MIN_DISTINCT:
        return f"password must have at least {MIN_DISTINCT} different characters"
    if _is_sequence(lowered):
        return "password must not be a keyboard or alphabet sequence"
    if _repeats_a_pattern(lowered):
        return "password must not be a short pattern repeated"
    common = common_passwords()
    squeezed = lowered.replace(" ", "")
    if lowered in common or squeezed in common:
        return "password is one of the most common passwords: choose another"
    base = _base(squeezed)
    if base in common:
        return "password is a common word with digits or symbols added: choose another"
    if username and base in {username.lower(), _base(username.lower())}:
        return "password must not be the username (with or without digits and symbols)"
    return None


def check(password: str, username: str = "") -> None:
    """Raise ``WeakPassword`` with the reason when ``password`` is refused."""
    reason = problem(password, username)
    if reason is not None:
        raise WeakPassword(reason)
