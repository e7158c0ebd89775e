"""``pulmogate demo`` against a running ``pulmogate up``: a phantom in, the results back."""

import subprocess
from pathlib import Path

import pytest

from tests.fixtures.gateway import PULMOGATE, run_gateway

pytestmark = pytest.mark.e2e


def test_demo_signs_in_as_the_env_admin_and_prints_what_came_back(tmp_path: Path) -> None:
    with run_gateway(tmp_path, [["up"]]) as gw:
        demo = subprocess.run(
            [
                PULMOGATE, "demo", "--api-url", gw.api, "--dicom-port", str(gw.dicom_port),
                "--slices", "60", "--timeout", "240",
            ],
            env=gw.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "signed in as admin" in demo.stdout
    assert "sent 60 slices" in demo.stdout
    assert ": done in " in demo.stdout and "prediction: " in demo.stdout
    assert "received: " in demo.stdout
