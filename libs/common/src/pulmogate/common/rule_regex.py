"""Rule description filters that cannot hang anything: the ``regex`` engine with a timeout.

Why ``regex`` (mrab-regex) and not stdlib ``re`` or ``google-re2``:

- stdlib ``re`` backtracks without a limit *and holds the GIL while it does*: ``^(a+)+$``
  on 30 characters froze the whole embedded gateway (association threads, event loop,
  liveness file), so moving the match to a thread alone would not have helped;
- ``regex`` accepts the same syntax as ``re`` (its default ``V0`` mode is ``re``-compatible,
  so every filter saved so far keeps its meaning), takes a per-call ``timeout`` and
  *releases the GIL while matching* a ``str``, so a match running in a worker thread
  leaves the event loop and the DICOM threads alone;
- ``google-re2`` cannot backtrack at all (linear time), but refuses lookarounds and
  backreferences that existing filters may use, and would change their meaning silently
  where its syntax differs.

A filter is checked at save time (``refusal``): it must compile; a repeated group whose
body is nothing but repeats (``(a+)+``, ``(\\w+\\s?)*``: the classic exponential shapes)
is refused; and it is probed on 64-character inputs (the length of a DICOM LO value) made
of the characters it names, with the run-time timeout: a filter that times out there is
refused. Whatever slips through (an old rule, an input the probes did not try) is matched
with ``timeout_s`` and, when it runs out, the filter counts as not matching and the job
log says so (``RegexTimeout``).
"""

import re
from functools import lru_cache
from re import _constants as sre_constants  # type: ignore[attr-defined]  # the shape check
from re import _parser as sre_parse  # type: ignore[attr-defined]  # reads stdlib's parse tree
from typing import Any

import regex

DEFAULT_TIMEOUT_S = 0.1
PROBE_LENGTH = 64  # DICOM LO: StudyDescription, SeriesDescription
PROBE_TAILS = ("!", "\x00", " ")
PROBE_ALPHABET_MAX = 8
LARGE_REPEAT = 16

REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT} | (
    {sre_constants.POSSESSIVE_REPEAT} if hasattr(sre_constants, "POSSESSIVE_REPEAT") else set()
)


class RegexTimeout(Exception):
    """A filter ran out of time on an input (it is treated as not matching)."""

    def __init__(self, pattern: str, timeout_s: float) -> None:
        super().__init__(
            f"REGEX_TIMEOUT: filter {pattern!r} took longer than {timeout_s * 1000:g} ms "
            "and was not applied"
        )


@lru_cache(maxsize=512)
def compiled(pattern: str) -> Any:
    """The compiled filter (``regex.error`` if it does not compile)."""
    return regex.compile(pattern, flags=regex.V0)


def search(pattern: str, text: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """``re.search`` semantics, within ``timeout_s`` (``RegexTimeout`` otherwise)."""
    try:
        return compiled(pattern).search(text, timeout=timeout_s) is not None
    except TimeoutError as exc:
        raise RegexTimeout(pattern, timeout_s) from exc


def _is_large(maximum: int) -> bool:
    return maximum == sre_constants.MAXREPEAT or maximum >= LARGE_REPEAT


def _only_repeats(items: list[tuple[Any, Any]]) -> bool:
    """True when a sequence is one or more large repeats and otherwise optional items."""
    large = False
    for op, av in items:
        if op == sre_constants.SUBPATTERN:
            if not _only_repeats(list(av[-1])):
                return False
            large = True
        elif op in REPEATS:
            minimum, maximum, _body = av
            if _is_large(maximum):
                large = True
            elif minimum > 0:
                return False
        elif op == sre_constants.BRANCH:
            if not any(_only_repeats(list(branch)) for branch in av[1]):
                return False
            large = True
        else:
            return False
    return large


def _nested_repeat(items: list[tuple[Any, Any]]) -> bool:
    """True when some large repeat's body consists only of large repeats."""
    for op, av in items:
        if op in REPEATS:
            _minimum, maximum, body = av
            if _is_large(maximum) and _only_repeats(list(body)):
                return True
            if _nested_repeat(list(body)):
                return True
        elif op == sre_constants.SUBPATTERN:
            if _nested_repeat(list(av[-1])):
                return True
        elif op == sre_constants.BRANCH and any(_nested_repeat(list(b)) for b in av[1]):
            return True
    return False


def _probe_inputs(pattern: str) -> list[str]:
    """Long runs of the characters the pattern names, each followed by a non-matching tail."""
    letters = [c for c in dict.fromkeys(pattern) if c.isalnum() or c in " ._-"]
    alphabet = [*letters, "a", "0", " "][:PROBE_ALPHABET_MAX]
    runs = [c * (PROBE_LENGTH - 1) + PROBE_TAILS[0] for c in alphabet]
    words = ("a " * PROBE_LENGTH)[: PROBE_LENGTH - 1]
    return runs + [words + tail for tail in PROBE_TAILS]


def shape_refusal(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a filter by its text alone: it does not compile, or it nests
    repeats (microseconds; safe on the event loop)."""
    if not pattern:
        return None
    try:
        compiled(pattern)
    except regex.error as exc:
        return f"invalid regular expression {pattern!r}: {exc}"
    except (RecursionError, OverflowError, ValueError) as exc:
        return f"invalid regular expression {pattern!r}: {type(exc).__name__} (too deeply nested?)"
    try:
        tree = sre_parse.parse(pattern)
        nested = _nested_repeat(list(tree))
    except (re.error, OverflowError, RecursionError):
        return None  # syntax only ``regex`` knows: the probes still run
    if nested:
        return (
            f"REGEX_NESTED_REPEAT: {pattern!r} repeats a group that is itself only repeats "
            "(like (a+)+), which can take exponential time; write the inner repeat once "
            "(e.g. a+ instead of (a+)+)"
        )
    return None


def probe_refusal(pattern: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """Why ``pattern`` is too slow on the probe inputs (up to about a second: run it in a
    worker thread; ``regex`` releases the GIL while it matches)."""
    if not pattern or shape_refusal(pattern) is not None:
        return None
    for probe in _probe_inputs(pattern):
        try:
            search(pattern, probe, timeout_s)
        except RegexTimeout:
            return (
                f"REGEX_TOO_SLOW: {pattern!r} takes longer than {timeout_s * 1000:g} ms on a "
                f"{len(probe)}-character description; simplify it (avoid overlapping "
                "alternatives under a repeat, like (a|aa)+)"
            )
    return None


def refusal(pattern: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """Why ``pattern`` may not be saved as a filter (None: it may)."""
    return shape_refusal(pattern) or probe_refusal(pattern, timeout_s)
