"""Text folded for case- and accent-insensitive search: MÜLLER, Müller and muller are one.

Names arrive in many character sets (ISO_IR 100, ISO_IR 192, …); pydicom decodes them to
Unicode, and the folded form (compatibility decomposition, combining marks dropped, case
folded) is what the database compares, on SQLite and PostgreSQL alike (their own lower()
differs: SQLite's folds ASCII only).
"""

import unicodedata


def fold(text: str) -> str:
    """``text`` without case or accents: "MÜLLER^JÖRG" -> "muller^jorg", "Straße" -> "strasse"."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", bare.casefold())
