"""Input checks: CT only, thin slices, enough slices, one geometry; each refusal says why."""

from dataclasses import dataclass

from pulmogate.common.refusals import RefusalCode
from pulmogate.router.checks import check_series


@dataclass
class Slice:
    modality: str = "CT"
    slice_thickness: float | None = 1.0
    rows: int | None = 512
    columns: int | None = 512
    pixel_spacing: str = "0.7\\0.7"


def check(slices: list[Slice], max_mm: float = 2.5, min_slices: int = 16):
    return check_series(slices, max_slice_thickness_mm=max_mm, min_slices=min_slices)


def test_a_thin_consistent_ct_series_passes() -> None:
    assert check([Slice() for _ in range(20)]) is None


def test_mr_is_refused_as_not_ct() -> None:
    refusal = check([Slice(modality="MR") for _ in range(20)])
    assert refusal is not None
    assert refusal.code == RefusalCode.NOT_CT
    assert refusal.message == "modality MR is not CT"


def test_thick_slices_are_rejected_with_reason() -> None:
    refusal = check([Slice(slice_thickness=5.0) for _ in range(20)])
    assert refusal is not None
    assert refusal.code == RefusalCode.SLICE_TOO_THICK
    assert refusal.message == "slice thickness 5.0 mm exceeds the 2.5 mm limit"


def test_slice_thickness_at_the_limit_passes() -> None:
    assert check([Slice(slice_thickness=2.5) for _ in range(20)]) is None


def test_too_few_slices_are_rejected() -> None:
    refusal = check([Slice() for _ in range(5)])
    assert refusal is not None
    assert refusal.code == RefusalCode.TOO_FEW_SLICES
    assert refusal.message == "5 slices, at least 16 are needed"


def test_inconsistent_matrix_and_spacing_are_named() -> None:
    slices = [Slice() for _ in range(18)] + [Slice(rows=256, columns=256, pixel_spacing="1\\1")] * 2
    refusal = check(slices)
    assert refusal is not None
    assert refusal.code == RefusalCode.INCONSISTENT_GEOMETRY
    assert "rows x columns differ: 512x512 (18), 256x256 (2)" in refusal.message
    assert "pixel spacing differs: 0.7\\0.7 (18), 1\\1 (2)" in refusal.message


def test_equal_spacings_written_differently_are_consistent() -> None:
    slices = [Slice(pixel_spacing="0.70\\0.7")] * 10 + [Slice(pixel_spacing="0.7\\0.70")] * 10
    assert check(slices) is None


def test_thickness_keeps_its_precision_in_the_message() -> None:
    refusal = check([Slice(slice_thickness=2.625) for _ in range(20)])
    assert refusal is not None
    assert refusal.message == "slice thickness 2.625 mm exceeds the 2.5 mm limit"
