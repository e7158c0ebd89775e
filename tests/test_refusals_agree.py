"""A refusal both the router (on the instance rows) and inference (on the files) can make
reads the same from either: one function in pulmogate.common.refusals builds it."""

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from pulmogate.common.refusals import Refusal, RefusalCode
from pulmogate.inference.volume import load_volume
from pulmogate.router.checks import check_series
from pulmogate.tools.phantom import make_phantom, write_series

ROOT = Path(__file__).resolve().parents[1]
SHARED = {RefusalCode.NOT_CT, RefusalCode.SLICE_TOO_THICK, RefusalCode.TOO_FEW_SLICES}


@dataclass
class Row:
    """The instance row the receiver records of a slice (what the router's checks read)."""

    modality: str
    slice_thickness: float | None
    rows: int | None
    columns: int | None
    pixel_spacing: str


def _row(ds: pydicom.Dataset) -> Row:
    spacing = "\\".join(str(v) for v in ds.PixelSpacing)
    return Row(ds.Modality, float(ds.SliceThickness), ds.Rows, ds.Columns, spacing)


def _thick(datasets: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    for ds in datasets:
        ds.SliceThickness = "2.625"
    return datasets


def _mr(datasets: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    for ds in datasets:
        ds.Modality = "MR"
    return datasets


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (_thick, RefusalCode.SLICE_TOO_THICK),
        (_mr, RefusalCode.NOT_CT),
        (lambda datasets: datasets[:10], RefusalCode.TOO_FEW_SLICES),
    ],
)
def test_the_router_and_inference_refuse_a_series_in_the_same_words(
    tmp_path: Path,
    change: Callable[[list[pydicom.Dataset]], list[pydicom.Dataset]],
    code: RefusalCode,
) -> None:
    write_series(make_phantom(slices=20, size=64, slice_thickness_mm=2.0), tmp_path, seed=1)
    datasets = change([pydicom.dcmread(p) for p in sorted(tmp_path.iterdir())])
    by_router = check_series(
        [_row(ds) for ds in datasets], max_slice_thickness_mm=2.5, min_slices=16
    )
    with pytest.raises(Refusal) as by_inference:
        load_volume(datasets, max_slice_thickness_mm=2.5, min_slices=16)
    assert by_router is not None
    assert (by_router.code, by_router.message) == (code, by_inference.value.message)
    assert (by_inference.value.code, by_inference.value.message) == (
        by_router.code,
        by_router.message,
    )


def test_the_shared_refusals_are_built_only_in_the_refusals_module() -> None:
    """No ``Refusal(RefusalCode.NOT_CT | SLICE_TOO_THICK | TOO_FEW_SLICES, ...)`` elsewhere."""
    found = []
    for path in [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]:
        if path.name == "refusals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Refusal"
                and node.args
                and isinstance(node.args[0], ast.Attribute)
                and node.args[0].attr in SHARED
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
