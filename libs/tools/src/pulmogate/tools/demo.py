"""``pulmogate demo``: a synthetic chest CT through the running gateway and back."""

import asyncio
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydicom import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from sqlalchemy import select

from pulmogate.common import audit
from pulmogate.common.api_tokens import issue_token
from pulmogate.common.db.accounts import ApiToken, Role, User
from pulmogate.common.db.models import utcnow
from pulmogate.common.db.session import Database
from pulmogate.common.dicom.scu import store
from pulmogate.common.dicom.statuses import STATUS_SUCCESS
from pulmogate.common.settings import Settings
from pulmogate.tools.phantom import make_phantom, write_series

DEMO_AET = "PG_DEMO"
VIEWER_AET = "PG_DEMO_VIEWER"
DEMO_USER = "demo"
FINAL = {"done", "ignored", "rejected", "failed", "no_license", "license_expired"}


class DemoViewer:
    """A tiny storage SCP standing in for the radiologist's PACS."""

    def __init__(self) -> None:
        self.received: list[Dataset] = []
        self._lock = threading.Lock()
        ae = AE(ae_title=VIEWER_AET)
        ae.supported_contexts = AllStoragePresentationContexts
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )
        assert server is not None
        self._server = server

    def _on_store(self, event: Any) -> int:
        with self._lock:
            self.received.append(event.dataset)
        return STATUS_SUCCESS

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()


def _create_route(client: httpx.Client, viewer_port: int) -> None:
    dest = client.post(
        "/api/v1/destinations",
        json={
            "name": f"demo-viewer-{viewer_port}",
            "host": "127.0.0.1",
            "port": viewer_port,
            "ae_title": VIEWER_AET,
        },
    )
    dest.raise_for_status()
    rule = client.post(
        "/api/v1/rules",
        json={
            "name": f"demo-{viewer_port}",
            "source_ae_title": DEMO_AET,
            "priority": 1,
            "destination_ids": [dest.json()["id"]],
        },
    )
    rule.raise_for_status()


def _wait_for_job(client: httpx.Client, after_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = client.get("/api/v1/jobs", params={"limit": 20}).json()["items"]
        mine = [j for j in items if j["id"] > after_id]
        if mine and mine[0]["status"] in FINAL:
            return dict(client.get(f"/api/v1/jobs/{mine[0]['id']}").json())
        time.sleep(0.5)
    raise TimeoutError(f"no finished job after {timeout:.0f} s")


def _local_token(settings: Settings) -> tuple[str, Callable[[], None]]:
    """A one-hour token for the local service account ``demo`` (operator, cannot sign in).

    Issued through the gateway's own database, which this machine can already change at will;
    audited as issued by the CLI, and revoked when the demo ends.
    """

    async def issue() -> tuple[int, str]:
        db = Database(settings.effective_database_url)
        try:
            async with db.session() as session:
                user = await session.scalar(select(User).where(User.username == DEMO_USER))
                if user is None:
                    user = User(username=DEMO_USER, role=Role.OPERATOR, password_hash="")
                    session.add(user)
                    await session.flush()
                token, secret = await issue_token(
                    session, user, "pulmogate demo", expires_in=timedelta(hours=1), actor_name="cli"
                )
                return token.id, secret
        finally:
            await db.dispose()

    async def revoke(token_id: int) -> None:
        db = Database(settings.effective_database_url)
        try:
            async with db.session() as session:
                token = await session.get(ApiToken, token_id)
                if token is not None:
                    token.revoked_at = utcnow()
                    audit.record(
                        session,
                        user_id=None,
                        username="cli",
                        action="token.revoke",
                        target=f"token {token.id} {token.prefix}… of {DEMO_USER}",
                    )
        finally:
            await db.dispose()

    token_id, secret = asyncio.run(issue())
    return secret, lambda: asyncio.run(revoke(token_id))


def _api_client(api_url: str, token: str | None) -> tuple[httpx.Client, Callable[[], None]]:
    """A client with credentials: ``--token``, else the env admin's sign-in, else a local token."""
    settings = Settings()
    if token:
        return httpx.Client(
            base_url=api_url, timeout=10, headers={"Authorization": f"Bearer {token}"}
        ), lambda: None
    password = settings.admin_password.get_secret_value()
    if settings.admin_username and password:
        client = httpx.Client(base_url=api_url, timeout=10)
        login = client.post(
            "/api/v1/auth/login", json={"username": settings.admin_username, "password": password}
        )
        login.raise_for_status()
        client.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        print(f"signed in as {settings.admin_username}")
        return client, lambda: None
    secret, revoke = _local_token(settings)
    print(f"using a one-hour API token of the local service account {DEMO_USER!r}")
    return httpx.Client(
        base_url=api_url, timeout=10, headers={"Authorization": f"Bearer {secret}"}
    ), revoke


def run_demo(
    *,
    api_url: str,
    token: str | None = None,
    dicom_host: str,
    dicom_port: int,
    aet: str,
    slices: int,
    involvement: float,
    timeout: float,
) -> int:
    """Run the demo; return the process exit code."""
    viewer = DemoViewer()
    # Already used to sign in, so closed in `finally`: an httpx client cannot be entered again.
    client, release = _api_client(api_url, token)
    try:
        _create_route(client, viewer.port)
        items = client.get("/api/v1/jobs", params={"limit": 1}).json()["items"]
        last_id = items[0]["id"] if items else 0
        with tempfile.TemporaryDirectory() as tmp:
            print(f"generating a {slices}-slice chest CT phantom, {involvement:.0%} involved")
            files = write_series(
                make_phantom(slices=slices, size=256, involvement=involvement),
                Path(tmp),
                seed=int(time.time()),
                study_uid=None,
            )
            started = time.monotonic()
            result = store(files, dicom_host, dicom_port, aet, calling_aet=DEMO_AET)
            print(f"sent {result.sent} slices to {aet}@{dicom_host}:{dicom_port}")
        job = _wait_for_job(client, last_id, timeout)
        wait_until = time.monotonic() + 10
        expected = len(job.get("outputs", []))
        while len(viewer.received) < expected and time.monotonic() < wait_until:
            time.sleep(0.2)
    finally:
        client.close()
        viewer.close()
        release()
    print(f"job {job['id']}: {job['status']} in {time.monotonic() - started:.1f} s")
    print(f"prediction: {job.get('prediction') or job.get('reason')}")
    series: dict[str, int] = {}
    for ds in viewer.received:
        key = str(ds.get("SeriesDescription", ds.Modality))
        series[key] = series.get(key, 0) + 1
    for name, count in sorted(series.items()):
        print(f"received: {name} ({count} object{'s' if count > 1 else ''})")
    return 0 if job["status"] == "done" else 1
