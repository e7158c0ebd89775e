"""One settings object for every service (env prefix ``PULMOGATE_``, .env supported)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# A group commit's fixed cost (about 7 ms of the loop on two busy cores, whatever its size)
# is shared by the instances of a quarter second; rows are that much later, answers are not.
RECEIVER_GROUP_INTERVAL_S = 0.25


class Settings(BaseSettings):
    """Configuration keys; each one is documented in README.md."""

    model_config = SettingsConfigDict(env_prefix="PULMOGATE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("var"), description="Storage root and the embedded SQLite file")
    database_url: str = Field("", description="SQLAlchemy URL; empty = SQLite in data_dir")
    broker_url: str = Field("memory://", description="amqp://… for RabbitMQ, memory:// in-process")

    ae_title: str = Field("PULMOGATE", description="Called AE title the receiver answers to")
    dicom_host: str = "0.0.0.0"
    dicom_port: int = 11112
    series_quiet_seconds: float = 5.0
    series_idle_seconds: float = 60.0
    receiver_group_interval_s: float = Field(
        RECEIVER_GROUP_INTERVAL_S,
        ge=0,
        le=5,
        description="The rows of acknowledged instances are committed in groups at most this often",
    )
    max_associations: int = Field(
        64, description="Concurrent DICOM associations the receiver accepts (more are rejected)"
    )
    accept_from: Literal["rules", "any"] = Field(
        "rules", description="rules: only calling AE/IP pairs named by enabled rules; any: all"
    )
    non_ct_objects: Literal["discard", "reject"] = Field(
        "discard",
        description="discard: accept every storage class a PACS forwards, keep only CT; "
        "reject: refuse non-CT presentation contexts",
    )
    accept_echo_from_unknown: bool = Field(
        False, description="Under accept_from=rules, let unnamed peers open C-ECHO/Q-R associations"
    )
    dicom_max_pdu_length: int = Field(
        16382, ge=4096, le=1 << 24, description="Max P-DATA PDU length advertised; longer aborts"
    )
    dicom_max_instance_mb: float = Field(
        1024.0, gt=0, description="Largest C-STORE dataset a named sender may send; larger aborts"
    )
    dicom_request_timeout_s: float = Field(
        10.0, gt=0, description="ARTIM: the whole A-ASSOCIATE-RQ must arrive within this"
    )
    dicom_idle_timeout_s: float = Field(
        60.0, gt=0, description="An association silent this long (or one PDU this slow) aborts"
    )
    dicom_max_pending_per_address: int = Field(
        16, ge=1, description="Connections per IP address still sending their association request"
    )
    dicom_max_associations_per_peer: int = Field(
        32, ge=1, description="Concurrent associations per calling AE title and IP address"
    )
    dicom_max_unknown_associations: int = Field(
        8, ge=0, description="Concurrent associations of peers no enabled rule names, in total"
    )
    disk_max_used_percent: float = Field(
        90.0, description="Above this use of the storage volume C-STORE answers 0xA700"
    )
    upload_max_bytes: int = Field(
        4 * 1024**3, description="Largest upload request (multipart body or resumable file)"
    )
    rule_regex_timeout_ms: float = Field(
        100.0, gt=0, description="Time limit of one rule description filter on one description"
    )
    janitor_interval_s: float = Field(3600.0, description="How often retention purges old jobs")
    liveness_file: Path = Field(
        Path("/tmp/pulmogate.alive"),
        description="Touched every 10 s by a running process's event loop; `pulmogate health`",
    )

    identical_resend: Literal["log", "reanalyse"] = Field(
        "log",
        description="A series sent again with nothing new: log it, or analyse it again",
    )

    max_slice_thickness_mm: float = 2.5
    min_slices: int = 16
    language: Literal["en", "ru"] = "en"
    model: str = "qct"
    execution_provider: Literal["auto", "cuda", "tensorrt", "cpu"] = "auto"

    delivery_max_attempts: int = 5
    delivery_backoff_initial_s: float = 10.0
    delivery_backoff_max_s: float = 900.0
    delivery_timeout_s: float = 30.0
    scu_ae_title: str = "PULMOGATE"

    api_host: str = "127.0.0.1"
    api_port: int = 8080

    admin_username: str = Field("", description="Admin created on the first start (no users yet)")
    admin_password: SecretStr = Field(SecretStr(""), description="…and that admin's password")
    session_hours: float = Field(12.0, description="Web session lifetime")
    cookie_secure: bool = Field(False, description="Send session cookies only over HTTPS")
    login_max_failures: int = Field(5, description="Failed sign-ins per username and IP…")
    login_window_s: float = Field(60.0, description="…within this window before 429")
    metrics_token: SecretStr = Field(SecretStr(""), description="Bearer token for /metrics")
    license_public_key: str = Field("", description="Ed25519 public key; empty = no licensing")
    license_warning_days: int = Field(14, description="Warn this many days before expiry")

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    metrics_port: int = Field(
        0, description="Port of /metrics in a process without the api (the api: its own); 0 = off"
    )
    metrics_host: str = Field("127.0.0.1", description="Address that metrics port listens on")

    @property
    def storage_dir(self) -> Path:
        """Where instance and result files live."""
        return self.data_dir / "storage"

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'pulmogate.db').resolve()}"
