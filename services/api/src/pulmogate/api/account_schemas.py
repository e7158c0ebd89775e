"""Request and response models for sign-in, users, API tokens, the audit log and licenses."""

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from pulmogate.common import password_policy
from pulmogate.common.db.accounts import Role
from pulmogate.common.users import USERNAME_PATTERN

PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


def _acceptable(password: str) -> str:
    """The password policy, as a field error that says why."""
    reason = password_policy.problem(password)
    if reason is not None:
        raise PydanticCustomError("weak_password", reason)
    return password


Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN)]
Password = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_acceptable)]


class LoginRequest(BaseModel):
    """Body of POST /auth/login."""

    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=PRINTABLE)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class Me(BaseModel):
    """The signed-in caller."""

    id: int | None
    username: str
    role: Role
    auth: Literal["session", "token"]
    csrf_token: str | None = Field(
        None, description="Send it as X-CSRF-Token with unsafe requests (session sign-in only)"
    )


class PasswordChange(BaseModel):
    """Body of POST /auth/password."""

    model_config = ConfigDict(extra="forbid")

    current_password: Annotated[str, StringConstraints(max_length=1024)]
    new_password: Password
    revoke_tokens: bool = Field(
        True, description="Revoke your API tokens too (default); false keeps them working"
    )


class UserCreate(BaseModel):
    """Body of POST /users."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    password: Password
    role: Role = Role.VIEWER


class UserUpdate(BaseModel):
    """Body of PATCH /users/{id}: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    active: bool | None = None
    password: Password | None = None
    revoke_tokens: bool = Field(
        True, description="With a new password: revoke the user's API tokens too (default)"
    )


class UserOut(BaseModel):
    """A user (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    role: Role
    active: bool
    created_at: datetime
    last_login_at: datetime | None


class TokenCreate(BaseModel):
    """Body of POST /tokens."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str,
        StringConstraints(min_length=1, max_length=100, strip_whitespace=True, pattern=PRINTABLE),
    ]
    expires_in_days: int | None = Field(None, ge=1, le=3650, description="Empty: never expires")


class TokenOut(BaseModel):
    """An API token as listed (the secret is never shown again)."""

    id: int
    name: str
    prefix: str
    username: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    """The new token, with its secret: shown this once."""

    token: str


class AuditOut(BaseModel):
    """One audit log entry."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    username: str
    action: str
    target: str
    details: dict[str, Any]


class LicenseInstall(BaseModel):
    """Body of POST /license: the key text as issued."""

    model_config = ConfigDict(extra="forbid")

    key: Annotated[str, StringConstraints(min_length=1, max_length=20_000, pattern=r"^[^\x00]*$")]


class LicenseStatusOut(BaseModel):
    """GET /license: whether analysis is licensed, and the installed key's fields."""

    status: Literal["valid", "warning", "expired", "none", "invalid", "community"]
    message: str
    product: str | None = None
    licensee: str | None = None
    issued: date | None = None
    expires: date | None = None
    days_left: int | None = None
    studies_per_day: int | None = None
    studies_today: int | None = None
    installed_at: datetime | None = None
