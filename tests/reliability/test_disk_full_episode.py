"""A disk-full episode (issue 11, F8): the storage volume fills while a series arrives, the
receiver refuses the rest with 0xA700, the part it kept is rejected for too few slices;
space comes back, the PACS sends the series again, and the rejection is reconsidered.

The gateway (`pulmogate up`) keeps its data folder on a small tmpfs of its own, filled
with a ballast file past the 90 % watermark: a real full volume, on nobody else's disk.
Mounting needs root (CI runs as root); elsewhere the module is skipped and says why.
"""

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from pulmogate.tools.phantom import make_phantom, write_series
from tests.fixtures.gateway import Gateway, add_route, run_gateway
from tests.reliability.faults import sqlite_rows
from tests.reliability.recording_scp import RecordingSCP, recording_scp
from tests.reliability.scu import send_series

pytestmark = pytest.mark.e2e

OUT_OF_RESOURCES = 0xA700
SLICES = 40
VOLUME_MB = 64


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("small-disk")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={VOLUME_MB}m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"a tmpfs of its own needs root: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture(scope="module")
def destination() -> Iterator[RecordingSCP]:
    with recording_scp() as scp:
        yield scp


@pytest.fixture(scope="module")
def gateway(small_disk: Path, destination: RecordingSCP) -> Iterator[Gateway]:
    env = {"PULMOGATE_MIN_SLICES": "16", "PULMOGATE_DISK_MAX_USED_PERCENT": "90"}
    with run_gateway(small_disk, [["up"]], extra_env=env) as gw:
        add_route(gw, destination.port, dest_aet=destination.ae_title, name="recorder")
        yield gw


def fill_past_watermark(volume: Path) -> Path:
    """A ballast file that leaves the volume 95 % used."""
    usage = shutil.disk_usage(volume)
    ballast = volume / "ballast"
    size = int(0.95 * usage.total) - usage.used
    with ballast.open("wb") as out:
        out.write(b"\0" * size)
    return ballast


def job_of(gw: Gateway, series_uid: str) -> dict[str, Any] | None:
    with gw.client() as client:
        items = client.get("/api/v1/jobs", params={"limit": 100}).json()["items"]
        mine = [j for j in items if j["series_uid"] == series_uid]
        if not mine:
            return None
        detail: dict[str, Any] = client.get(f"/api/v1/jobs/{mine[0]['id']}").json()
        log = client.get(f"/api/v1/jobs/{detail['id']}/log").json()
    detail["log"] = [line["message"] for line in log]
    return detail


def wait_job(gw: Gateway, series_uid: str, until: Any, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        gw.assert_alive()
        seen = job_of(gw, series_uid)
        if seen is not None and until(seen):
            return seen
        time.sleep(0.3)
    raise AssertionError(f"job never got there: {seen}\n{gw.logs()[-4000:]}")


def test_a_rejection_left_by_a_disk_full_episode_is_reconsidered_when_the_rest_arrives(
    gateway: Gateway, small_disk: Path, destination: RecordingSCP, tmp_path: Path
) -> None:
    folder = tmp_path / "ct"
    write_series(
        make_phantom(slices=SLICES, size=96, pixel_spacing_mm=3.6, slice_thickness_mm=1.25),
        folder,
        seed=11,
    )
    files = sorted(folder.iterdir())
    ballast: list[Path] = []

    def disk_fills(index: int, _status: int | None) -> bool:
        if index == 1:
            ballast.append(fill_past_watermark(small_disk))
        return False

    first = send_series(gateway.dicom_port, files, after_each=disk_fills)
    assert list(first.statuses.values()) == [0] * 2 + [OUT_OF_RESOURCES] * (SLICES - 2)
    series_uid = str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    rejected = wait_job(gateway, series_uid, lambda j: j["status"] == "rejected")
    assert rejected["reason"] == "2 slices, at least 16 are needed"
    stored = sqlite_rows(
        gateway.data_dir / "pulmogate.db",
        "SELECT i.path FROM instances i JOIN series s ON s.id = i.series_id "
        f"WHERE s.series_uid = '{series_uid}'",
    )
    assert len(stored) == 2 and all(Path(str(p)).is_file() for (p,) in stored)

    ballast[0].unlink()
    second = send_series(gateway.dicom_port, files)
    assert list(second.statuses.values()) == [0] * SLICES

    done = wait_job(gateway, series_uid, lambda j: j["status"] == "done")
    assert (done["instance_count"], done["analysed_instance_count"]) == (SLICES, SLICES)
    assert done["reason"] is None and done["prediction"]
    said = [
        "rule 'recorder' matched; rejected: TOO_FEW_SLICES: 2 slices, at least 16 are needed",
        f"series grew from 2 to {SLICES} instances (2 received again, {SLICES - 2} new): "
        "checked and analysed again; the 2 result objects of the previous analysis are "
        "replaced",  # the failure notice (page and SR) sent for the rejection
        f"rule 'recorder' matched; {SLICES} slices passed the input checks; queued for analysis",
    ]
    assert [line for line in done["log"] if line in said] == said, done["log"]
    outputs = {o["sop_instance_uid"] for o in done["outputs"]}
    assert outputs and set(destination.received(outputs)) == outputs
    assert not destination.duplicates(outputs)
