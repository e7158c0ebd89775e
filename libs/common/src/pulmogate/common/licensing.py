"""Ed25519-signed license keys: issue (vendor), verify, install, and the state analysis obeys.

A key is ``PGL1.<payload>.<signature>`` (base64url, no padding), optionally wrapped in
``-----BEGIN/END PULMOGATE LICENSE-----`` lines. The payload is JSON with product, licensee,
issued, expires and an optional studies_per_day; the signature covers the payload bytes. The
installed text is verified again on every use, so editing the stored row changes nothing.
"""

import base64
import binascii
import json
import textwrap
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common import audit
from pulmogate.common.db.accounts import License
from pulmogate.common.db.models import Job, JobStatus

PRODUCT = "pulmogate"
VERSION_TAG = "PGL1"
ARMOR_BEGIN = "-----BEGIN PULMOGATE LICENSE-----"
ARMOR_END = "-----END PULMOGATE LICENSE-----"

#: Jobs that count against studies_per_day: the ones that went (or go) to analysis.
ANALYSED_STATUSES = (
    JobStatus.QUEUED,
    JobStatus.ANALYSING,
    JobStatus.ANALYSED,
    JobStatus.DELIVERING,
    JobStatus.DONE,
    JobStatus.FAILED,
)


class LicenseError(ValueError):
    """A key that is malformed, not ours, or whose signature does not verify."""


class LicenseState(StrEnum):
    """What GET /license reports and the router obeys."""

    VALID = "valid"
    WARNING = "warning"
    EXPIRED = "expired"
    NONE = "none"
    INVALID = "invalid"
    COMMUNITY = "community"


@dataclass(frozen=True)
class LicenseFields:
    """What a license grants."""

    product: str
    licensee: str
    issued: date
    expires: date
    studies_per_day: int | None = None

    def payload(self) -> bytes:
        """The canonical JSON that is signed."""
        body: dict[str, Any] = {
            "product": self.product,
            "licensee": self.licensee,
            "issued": self.issued.isoformat(),
            "expires": self.expires.isoformat(),
        }
        if self.studies_per_day is not None:
            body["studies_per_day"] = self.studies_per_day
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class LicenseStatus:
    """The license as it stands today."""

    state: LicenseState
    message: str
    fields: LicenseFields | None = None
    days_left: int | None = None
    installed: License | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- vendor side -----------------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    """A new vendor signing key."""
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """The signing key as unencrypted PKCS#8 PEM (keep it off the gateway)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """The signing key from PEM; LicenseError if it is not Ed25519."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise LicenseError(f"not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise LicenseError("the private key is not an Ed25519 key")
    return key


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The verification key as PULMOGATE_LICENSE_PUBLIC_KEY takes it: base64 of 32 raw bytes."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def issue_license(key: Ed25519PrivateKey, fields: LicenseFields) -> str:
    """A signed license key, armored in 64-character lines."""
    if fields.expires < fields.issued:
        raise LicenseError("expires is before issued")
    payload = fields.payload()
    token = f"{VERSION_TAG}.{_b64(payload)}.{_b64(key.sign(payload))}"
    return "\n".join([ARMOR_BEGIN, *textwrap.wrap(token, 64), ARMOR_END]) + "\n"


# --- gateway side ----------------------------------------------------------------------------


def load_public_key(text: str) -> Ed25519PublicKey:
    """The configured verification key: base64 of the 32 raw bytes, or a PEM public key."""
    text = text.strip()
    try:
        if "BEGIN" in text:
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise LicenseError("PULMOGATE_LICENSE_PUBLIC_KEY is not an Ed25519 key")
            return key
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error) as exc:
        raise LicenseError(
            "PULMOGATE_LICENSE_PUBLIC_KEY is not an Ed25519 public key (base64 of 32 bytes, or PEM)"
        ) from exc


def _token(key_text: str) -> str:
    lines = [ln for ln in key_text.strip().splitlines() if not ln.strip().startswith("-----")]
    return "".join("".join(lines).split())


def verify_license(key_text: str, public_key: str) -> LicenseFields:
    """The fields of a key whose signature verifies; LicenseError with the reason otherwise."""
    parts = _token(key_text).split(".")
    if len(parts) != 3 or parts[0] != VERSION_TAG:
        raise LicenseError("not a PulmoGate license key (expected PGL1.<payload>.<signature>)")
    try:
        payload, signature = _unb64(parts[1]), _unb64(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise LicenseError("the license key is damaged (bad base64)") from exc
    try:
        load_public_key(public_key).verify(signature, payload)
    except InvalidSignature as exc:
        raise LicenseError(
            "the license signature does not verify with the configured public key "
            "(altered key, or issued by someone else)"
        ) from exc
    try:
        body = json.loads(payload)
        fields = LicenseFields(
            product=str(body["product"]),
            licensee=str(body["licensee"]),
            issued=date.fromisoformat(body["issued"]),
            expires=date.fromisoformat(body["expires"]),
            studies_per_day=(
                int(body["studies_per_day"]) if body.get("studies_per_day") is not None else None
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LicenseError(f"the license payload is incomplete: {exc}") from exc
    if fields.product != PRODUCT:
        raise LicenseError(f"the license is for {fields.product!r}, not {PRODUCT!r}")
    return fields


def evaluate(
    key_text: str | None, public_key: str, today: date, warning_days: int = 14
) -> LicenseStatus:
    """The state of an installed key (or of none) on ``today``."""
    if not public_key.strip():
        return LicenseStatus(
            LicenseState.COMMUNITY,
            "licensing is off (no PULMOGATE_LICENSE_PUBLIC_KEY): community mode, analysis allowed",
        )
    if key_text is None:
        return LicenseStatus(LicenseState.NONE, "no license installed")
    try:
        fields = verify_license(key_text, public_key)
    except LicenseError as exc:
        return LicenseStatus(LicenseState.INVALID, f"the installed license is invalid: {exc}")
    days_left = (fields.expires - today).days
    if today < fields.issued:
        return LicenseStatus(
            LicenseState.INVALID,
            f"the license starts on {fields.issued.isoformat()}",
            fields,
            days_left,
        )
    if days_left < 0:
        return LicenseStatus(
            LicenseState.EXPIRED,
            f"license expired on {fields.expires.isoformat()}",
            fields,
            days_left,
        )
    if days_left <= warning_days:
        return LicenseStatus(
            LicenseState.WARNING,
            f"license expires on {fields.expires.isoformat()} ({days_left} days left): renew it",
            fields,
            days_left,
        )
    return LicenseStatus(
        LicenseState.VALID, f"licensed until {fields.expires.isoformat()}", fields, days_left
    )


async def installed_license(session: AsyncSession) -> License | None:
    """The most recently installed key (a renewal replaces the one before)."""
    query = select(License).order_by(License.installed_at.desc(), License.id.desc()).limit(1)
    return await session.scalar(query)


async def current_status(
    session: AsyncSession, public_key: str, today: date, warning_days: int = 14
) -> LicenseStatus:
    """The installed key's state today."""
    row = await installed_license(session)
    status = evaluate(row.key_text if row else None, public_key, today, warning_days)
    return LicenseStatus(status.state, status.message, status.fields, status.days_left, row)


async def studies_today(session: AsyncSession, today: date, *, exclude_series_id: int = 0) -> int:
    """Jobs sent to analysis since midnight UTC (what studies_per_day limits)."""
    since = datetime.combine(today, time.min, tzinfo=UTC)
    query = (
        select(func.count())
        .select_from(Job)
        .where(Job.created_at >= since)
        .where(Job.status.in_([str(s) for s in ANALYSED_STATUSES]))
        .where(Job.series_id != exclude_series_id)
    )
    return int(await session.scalar(query) or 0)


async def install_license(
    session: AsyncSession,
    key_text: str,
    public_key: str,
    *,
    actor_id: int | None,
    actor_name: str,
) -> License:
    """Verify and store a key (LicenseError if licensing is off or the key does not verify)."""
    if not public_key.strip():
        raise LicenseError(
            "licensing is off: set PULMOGATE_LICENSE_PUBLIC_KEY before installing a license"
        )
    fields = verify_license(key_text, public_key)
    row = License(
        key_text=key_text.strip(),
        product=fields.product,
        licensee=fields.licensee,
        issued=fields.issued,
        expires=fields.expires,
        studies_per_day=fields.studies_per_day,
        installed_by=actor_name,
    )
    session.add(row)
    await session.flush()
    audit.record(
        session,
        user_id=actor_id,
        username=actor_name,
        action="license.install",
        target=f"license {row.id}",
        details={
            "licensee": fields.licensee,
            "issued": fields.issued.isoformat(),
            "expires": fields.expires.isoformat(),
            "studies_per_day": fields.studies_per_day,
        },
    )
    return row
