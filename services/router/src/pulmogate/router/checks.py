"""Input checks on a series' instance rows, before a job is queued for analysis."""

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from pulmogate.common.refusals import (
    Refusal,
    RefusalCode,
    mixed_modalities,
    not_ct,
    slice_too_thick,
    too_few_slices,
)


class InstanceLike(Protocol):
    """The instance fields the checks read (an ``Instance`` row fits)."""

    modality: str
    slice_thickness: float | None
    rows: int | None
    columns: int | None
    pixel_spacing: str


def _spacing(value: str) -> str:
    """Pixel spacing normalised so '0.70\\0.7' and '0.7\\0.7' compare equal."""
    parts = [p for p in value.replace(",", "\\").split("\\") if p.strip()]
    try:
        return "\\".join(f"{float(p):g}" for p in parts)
    except ValueError:
        return value.strip()


def _describe(counts: Counter[str]) -> str:
    return ", ".join(f"{value} ({n})" for value, n in counts.most_common())


def check_modality(instances: Sequence[InstanceLike]) -> Refusal | None:
    """Only CT is analysed."""
    modalities = Counter((i.modality or "").strip().upper() or "unknown" for i in instances)
    other = [m for m in modalities if m != "CT"]
    if not other:
        return None
    if len(modalities) == 1:
        return not_ct(other[0])
    return mixed_modalities(_describe(modalities))


def check_slice_thickness(instances: Sequence[InstanceLike], max_mm: float) -> Refusal | None:
    """The thickest slice must not exceed the limit (thick slices hide small lesions)."""
    known = [i.slice_thickness for i in instances if i.slice_thickness is not None]
    if not known:
        return None
    thickest = max(known)
    if thickest > max_mm + 1e-6:
        return slice_too_thick(thickest, max_mm)
    return None


def check_slice_count(instances: Sequence[InstanceLike], min_slices: int) -> Refusal | None:
    """Enough slices to cover the chest."""
    if len(instances) < min_slices:
        return too_few_slices(len(instances), min_slices)
    return None


def check_geometry(instances: Sequence[InstanceLike]) -> Refusal | None:
    """Every slice has the same matrix and pixel spacing (one volume can be built)."""
    differences: list[str] = []
    matrices = Counter(f"{i.rows}x{i.columns}" for i in instances)
    if len(matrices) > 1:
        differences.append(f"rows x columns differ: {_describe(matrices)}")
    spacings = Counter(_spacing(i.pixel_spacing or "") or "missing" for i in instances)
    if len(spacings) > 1:
        differences.append(f"pixel spacing differs: {_describe(spacings)}")
    if differences:
        return Refusal(RefusalCode.INCONSISTENT_GEOMETRY, "; ".join(differences))
    return None


def check_series(
    instances: Sequence[InstanceLike], *, max_slice_thickness_mm: float, min_slices: int
) -> Refusal | None:
    """The first refusal among the input checks, in a fixed order, or None when all pass."""
    return (
        check_modality(instances)
        or check_slice_thickness(instances, max_slice_thickness_mm)
        or check_slice_count(instances, min_slices)
        or check_geometry(instances)
    )


class NumberedLike(Protocol):
    """The instance field the numbering note reads."""

    instance_number: int | None


def numbering_gaps(instances: Sequence[NumberedLike]) -> str | None:
    """A note when the instance numbers leave holes (a series perhaps not whole), else None.

    Not a refusal: some series are numbered with steps or from a larger acquisition; the
    job log says it, and the job is analysed again if the missing instances arrive.
    """
    numbers = sorted({i.instance_number for i in instances if i.instance_number is not None})
    if len(numbers) < 2:
        return None
    missing = numbers[-1] - numbers[0] + 1 - len(numbers)
    if missing <= 0:
        return None
    return (
        f"instance numbers run from {numbers[0]} to {numbers[-1]} with {missing} missing: "
        "the series may not be whole"
    )
