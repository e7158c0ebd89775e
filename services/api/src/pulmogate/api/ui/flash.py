"""One message for the page after a form: kept in a short-lived cookie, not in the URL.

The cookie is HttpOnly and SameSite=Strict: only this site's own redirect sets it, and the
next page shows it once and clears it. Query parameters never become page text.
"""

import base64
import binascii
import json
from dataclasses import dataclass

from fastapi import Request, Response

FLASH_COOKIE = "pulmogate_flash"
MAX_CHARS = 600
MAX_AGE_S = 120


@dataclass(frozen=True)
class Flash:
    """A confirmation and/or an error to show once."""

    notice: str = ""
    error: str = ""

    def __bool__(self) -> bool:
        return bool(self.notice or self.error)


def put(response: Response, *, notice: str = "", error: str = "") -> None:
    """Attach the message to a redirect."""
    data = json.dumps({"notice": notice[:MAX_CHARS], "error": error[:MAX_CHARS]})
    value = base64.urlsafe_b64encode(data.encode()).decode()
    response.set_cookie(
        FLASH_COOKIE, value, max_age=MAX_AGE_S, httponly=True, samesite="strict", path="/"
    )


def take(request: Request) -> Flash:
    """The message the previous redirect left (empty when none, or unreadable)."""
    value = request.cookies.get(FLASH_COOKIE, "")
    if not value:
        return Flash()
    try:
        data = json.loads(base64.urlsafe_b64decode(value.encode()))
        return Flash(
            str(data.get("notice", ""))[:MAX_CHARS], str(data.get("error", ""))[:MAX_CHARS]
        )
    except (binascii.Error, ValueError, AttributeError):
        return Flash()


def clear(response: Response) -> None:
    """Forget the message once a page has shown it."""
    response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="strict")
