"""Hostile series for the inference volume loader (``load_volume``): it builds a Volume
or raises a Refusal with a reason, never another exception, never a hang or a huge
allocation from header values (oversized Rows/Columns, absurd pixel data lengths, NaN
geometry, missing elements, byte-mutated files)."""

import math
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid

from pulmogate.common.refusals import Refusal
from pulmogate.inference.volume import Volume, load_volume
from tests.reliability.dicom_mutations import ct_dataset, encode, hostile_headers, mutated_bodies

EXAMPLES = {"headers": 120, "bytes": 80}
SECONDS_PER_SERIES = 10.0
OUTCOMES: dict[str, int] = {"volumes": 0, "refusals": 0}


def series(count: int, size: int = 16) -> list[Dataset]:
    study, uid = generate_uid(), generate_uid()
    return [ct_dataset(k, size=size, study=study, series=uid) for k in range(count)]


# Fixed UIDs, so every example mutates bodies of the same lengths (hypothesis replays).
FIXED = [
    encode(ct_dataset(k, study="1.2.3.4", series="1.2.3.4.5", sop=f"1.2.3.4.5.{k + 1}"))
    for k in range(4)
]


def load(sources: list[Path | Dataset]) -> None:
    started = time.monotonic()
    try:
        volume = load_volume(sources, max_slice_thickness_mm=2.5, min_slices=1)
        assert isinstance(volume, Volume)
        assert np.isfinite(volume.positions).all(), volume.positions
        assert all(np.isfinite(h.RescaleSlope) for h in volume.headers if "RescaleSlope" in h)
        assert all(math.isfinite(s) and s > 0 for s in volume.spacing), volume.spacing
        OUTCOMES["volumes"] += 1
    except Refusal as refusal:
        assert str(refusal).strip(), "a refusal without a reason"
        OUTCOMES["refusals"] += 1
    assert time.monotonic() - started < SECONDS_PER_SERIES


@settings(
    max_examples=EXAMPLES["headers"],
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    hostile=st.lists(hostile_headers(), min_size=1, max_size=3),
    count=st.integers(0, 6),
    where=st.integers(0, 6),
)
def test_hostile_headers_are_loaded_or_refused_with_a_reason(
    hostile: list[Dataset], count: int, where: int
) -> None:
    slices: list[Path | Dataset] = list(series(count))
    for ds in hostile:
        slices.insert(min(where, len(slices)), ds)
    load(slices)


@settings(
    max_examples=EXAMPLES["bytes"],
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_byte_mutated_files_are_loaded_or_refused_with_a_reason(
    tmp_path: Path, data: st.DataObject
) -> None:
    paths: list[Path | Dataset] = []
    victim = data.draw(st.integers(0, 3))
    for k, (head, body) in enumerate(FIXED):
        if k == victim:
            body = data.draw(mutated_bodies(body))
        path = tmp_path / f"{k}.dcm"
        path.write_bytes(head + body)
        paths.append(path)
    load(paths)


@pytest.mark.parametrize("rows,columns", [(65535, 65535), (32768, 4096), (1, 65535)])
def test_oversized_dimensions_are_refused_before_any_pixel_allocation(
    rows: int, columns: int
) -> None:
    slices = series(3)
    for ds in slices:
        ds.Rows, ds.Columns = rows, columns
    with pytest.raises(Refusal):
        load_volume(slices, min_slices=1)


def test_pixel_data_shorter_than_the_header_promises_is_refused() -> None:
    slices = series(3)
    slices[1].PixelData = slices[1].PixelData[:100]
    buffer = BytesIO()
    slices[1].save_as(buffer, enforce_file_format=True)
    slices[1] = dcmread(BytesIO(buffer.getvalue()))
    with pytest.raises(Refusal, match="pixel data"):
        load_volume(slices, min_slices=1)


def test_the_fuzzing_reached_volumes_and_refusals() -> None:
    """Mutations that all fail at the first check would prove little: both outcomes occur."""
    if not sum(OUTCOMES.values()):
        pytest.skip("runs after the fuzz tests of this module")
    assert OUTCOMES["volumes"] > 0 and OUTCOMES["refusals"] > 0, OUTCOMES
    print(f"fuzzed volume loader: {OUTCOMES}")
