"""qct segmentation, quantification and grading on phantoms; execution providers and sessions.

Phantoms are 256 x 256 pixels of 1.4 mm (a 358 mm field of view, adult-sized anatomy) with
2.5 mm slices, so each is analysed in about a second. The floors here are looser than the
targets in bench/accuracy.py (docs/accuracy.md) so that they stay stable.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from pulmogate.common.refusals import Refusal, RefusalCode
from pulmogate.inference.analysis import (
    NOISE_FLOOR_PERCENT,
    Analysis,
    Figures,
    analyse,
    default_segmenter,
    grade_for,
)
from pulmogate.inference.segment import load_card, load_segmenter, onnx_runtime
from pulmogate.inference.segment.onnx_runtime import cached_session, providers_for
from pulmogate.inference.segment.qct_graph import build_bands_graph
from pulmogate.inference.volume import Volume
from pulmogate.tools.phantom import Phantom, make_phantom

LUNG_DICE_FLOOR = 0.95
LESION_DICE_FLOOR = 0.85
PERCENT_ERROR_CEILING = 3.0  # points


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean masks (1.0 when both are empty)."""
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 2.0 * np.count_nonzero(a & b) / total if total else 1.0


def as_volume(phantom: Phantom) -> Volume:
    """A phantom as the loader would return it (LPS axial, slices 0..n inferior to superior)."""
    nz = phantom.hu.shape[0]
    positions = np.array([[0.0, 0.0, k * phantom.spacing[0]] for k in range(nz)])
    return Volume(phantom.hu, phantom.spacing, positions, (1.0, 0, 0, 0, 1.0, 0), headers=[])


def truth_grade(phantom: Phantom) -> int:
    """The grade the phantom's exact masks give (worse lung)."""
    grades = []
    for side in (1, 2):
        lung = phantom.lungs == side
        grades.append(grade_for(100.0 * np.count_nonzero(phantom.lesions[lung]) / lung.sum()))
    return max(grades)


def _phantom(involvement: float, pattern: str, seed: int) -> Phantom:
    return make_phantom(
        slices=48,
        size=256,
        slice_thickness_mm=2.5,
        pixel_spacing_mm=1.4,
        involvement=involvement,
        pattern=pattern,
        seed=seed,
    )


CASES = {
    "clear": (0.0, "peripheral", 11),
    "ct2": (0.3, "diffuse", 12),
    "ct3": (0.6, "peripheral", 13),
}


@pytest.fixture(scope="module")
def analysed() -> dict[str, tuple[Phantom, Analysis]]:
    """Each case phantom with its qct analysis (computed once for the module)."""
    out = {}
    for name, (involvement, pattern, seed) in CASES.items():
        phantom = _phantom(involvement, pattern, seed)
        out[name] = (phantom, analyse(as_volume(phantom)))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_lungs_and_sides_match_the_phantom(
    analysed: dict[str, tuple[Phantom, Analysis]], case: str
) -> None:
    phantom, analysis = analysed[case]
    assert dice(analysis.lungs > 0, phantom.lungs > 0) >= LUNG_DICE_FLOOR
    for side in (1, 2):  # 1 right (low x in LPS), 2 left
        assert dice(analysis.lungs == side, phantom.lungs == side) >= LUNG_DICE_FLOOR


@pytest.mark.parametrize("case", ["ct2", "ct3"])
def test_lesions_volume_and_grade_match_the_phantom(
    analysed: dict[str, tuple[Phantom, Analysis]], case: str
) -> None:
    phantom, analysis = analysed[case]
    assert dice(analysis.lesions > 0, phantom.lesions > 0) >= LESION_DICE_FLOOR
    for code in (1, 2):  # ground-glass and consolidation are told apart
        assert dice(analysis.lesions == code, phantom.lesions == code) >= LESION_DICE_FLOOR - 0.05
    assert abs(analysis.total.percent - phantom.involvement_percent) <= PERCENT_ERROR_CEILING
    assert analysis.grade == truth_grade(phantom)
    voxel_ml = float(np.prod(phantom.spacing)) / 1000
    true_ml = np.count_nonzero(phantom.lungs) * voxel_ml
    assert analysis.total.lung_ml == pytest.approx(true_ml, rel=0.05)
    assert analysis.total.lung_ml == pytest.approx(analysis.right.lung_ml + analysis.left.lung_ml)


def test_clear_lungs_are_ct0_below_the_noise_floor(
    analysed: dict[str, tuple[Phantom, Analysis]],
) -> None:
    _, analysis = analysed["clear"]
    assert analysis.total.percent < NOISE_FLOOR_PERCENT
    assert analysis.grade == 0
    assert analysis.prediction("en") == "No CT signs of pneumonia"
    assert analysis.prediction("ru") == "КТ-признаков пневмонии не найдено"


class TruthSegmenter:
    """Returns given masks: isolates quantification and grading from segmentation."""

    name, version, card = "truth", "0", "test double"

    def __init__(self, lungs: np.ndarray, lesions: np.ndarray) -> None:
        self.lungs, self.lesions = lungs, lesions

    def warm_up(self) -> None:
        """Nothing to warm up."""

    def segment(self, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
        return self.lungs, self.lesions


def test_graded_by_the_worse_lung(analysed: dict[str, tuple[Phantom, Analysis]]) -> None:
    phantom, _ = analysed["clear"]
    lesions = np.zeros_like(phantom.lesions)
    for side, share, code in ((1, 0.6, 1), (2, 0.1, 2)):  # right 60 % GGO, left 10 % cons.
        index = np.flatnonzero(phantom.lungs.ravel() == side)
        lesions.ravel()[index[: int(share * index.size)]] = code
    analysis = analyse(as_volume(phantom), TruthSegmenter(phantom.lungs, lesions))
    voxel_ml = float(np.prod(phantom.spacing)) / 1000
    assert analysis.right.ggo_ml == pytest.approx(np.count_nonzero(lesions == 1) * voxel_ml)
    assert analysis.left.consolidation_ml == pytest.approx(
        np.count_nonzero(lesions == 2) * voxel_ml
    )
    assert analysis.right.percent == pytest.approx(60.0, abs=0.01)
    assert analysis.left.percent == pytest.approx(10.0, abs=0.01)
    assert 25 <= analysis.total.percent < 50  # the total alone would be CT-2 ...
    assert analysis.grade == 3  # ... the right lung makes it CT-3
    percent = round(analysis.total.percent)
    assert analysis.prediction() == f"CT signs of viral pneumonia, CT-3, {percent} % of lung volume"


@pytest.mark.parametrize(
    ("percent", "grade"),
    [
        (0.0, 0),
        (NOISE_FLOOR_PERCENT - 0.01, 0),
        (NOISE_FLOOR_PERCENT, 1),
        (24.99, 1),
        (25.0, 2),
        (49.99, 2),
        (50.0, 3),
        (74.99, 3),
        (75.0, 4),
        (100.0, 4),
    ],
)
def test_grade_boundaries(percent: float, grade: int) -> None:
    assert grade_for(percent) == grade


def test_noise_floor_is_the_one_in_the_model_card() -> None:
    card = load_card("qct")
    assert card.raw["grading"]["noise_floor_percent"] == NOISE_FLOOR_PERCENT
    assert any("Lung CT Analyzer" in source for source in card.sources)
    assert card.raw["bands_hu"]["ground_glass"] == [-750.0, -400.0]
    assert card.raw["bands_hu"]["consolidation"] == [-400.0, 100.0]  # Gattinoni: non-aerated
    assert any("Gattinoni" in source for source in card.sources)


def _with_percent(grade: int, percent: float) -> Analysis:
    figures = Figures(lung_ml=1000.0, ggo_ml=percent * 10 * 0.75, consolidation_ml=percent * 2.5)
    empty = np.zeros((1, 1, 1), np.uint8)
    return Analysis(empty, empty, figures, figures, figures, grade, "qct", "1")


def test_prediction_texts_exactly_as_specified() -> None:
    analysis = _with_percent(2, 32.0)
    assert analysis.prediction("ru") == "КТ-признаки вирусной пневмонии, КТ-2, объём поражения 32 %"
    assert analysis.prediction("en") == "CT signs of viral pneumonia, CT-2, 32 % of lung volume"
    assert _with_percent(0, 0.4).prediction("ru") == "КТ-признаков пневмонии не найдено"
    assert _with_percent(0, 0.4).prediction("en") == "No CT signs of pneumonia"
    with pytest.raises(ValueError, match="language must be 'en' or 'ru'"):
        analysis.prediction("de")


def test_no_lungs_is_refused() -> None:
    hu = np.full((20, 64, 64), -1000, np.int16)  # air around a block of soft tissue
    hu[:, 8:56, 8:56] = 40
    volume = Volume(hu, (2.0, 1.0, 1.0), np.zeros((20, 3)), (1.0, 0, 0, 0, 1.0, 0), [])
    with pytest.raises(Refusal) as caught:
        analyse(volume)
    assert caught.value.code == RefusalCode.NO_LUNGS
    assert caught.value.message == (
        "found 0 ml of lung, at least 100 ml is needed (not a chest CT?)"
    )


def test_long_series_are_segmented_on_averaged_slices(
    analysed: dict[str, tuple[Phantom, Analysis]],
) -> None:
    phantom, full = analysed["ct2"]
    volume = as_volume(phantom)
    coarse = analyse(volume, max_voxels=volume.hu.size // 2)  # two slices averaged into one
    assert coarse.lungs.shape == volume.hu.shape
    assert dice(coarse.lungs > 0, phantom.lungs > 0) >= LUNG_DICE_FLOOR - 0.02
    assert abs(coarse.total.percent - full.total.percent) <= PERCENT_ERROR_CEILING


def test_execution_provider_settings(caplog: pytest.LogCaptureFixture) -> None:
    available = ort.get_available_providers()
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert providers_for("auto")[-1] == "CPUExecutionProvider"
    with caplog.at_level(logging.WARNING, logger=onnx_runtime.__name__):
        cuda = providers_for("cuda")
        tensorrt = providers_for("tensorrt")
    if "CUDAExecutionProvider" in available:
        assert cuda == ["CUDAExecutionProvider", "CPUExecutionProvider"]
        assert providers_for("auto")[0] == "CUDAExecutionProvider"
    else:  # this machine: the GPU settings fall back to the CPU, with a warning
        assert cuda == ["CPUExecutionProvider"]
        assert "CUDAExecutionProvider is not available" in caplog.text
    assert tensorrt[-1] == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="execution provider must be one of"):
        providers_for("gpu")


def test_one_session_per_graph_created_once_and_warmed() -> None:
    built: list[int] = []

    def build() -> onnx.ModelProto:
        built.append(1)
        return build_bands_graph()

    first = cached_session("test-once", build, "cpu")
    assert cached_session("test-once", build, "cpu") is first
    assert len(built) == 1
    assert default_segmenter() is default_segmenter()
    segmenter = load_segmenter("qct", "cpu")  # warm_up ran the bands graph once
    keys = {key for key, setting in onnx_runtime._sessions if setting == "cpu"}
    assert any(key.startswith("qct-bands-") for key in keys)
    assert segmenter.name == "pulmogate-qct" and segmenter.version == load_card("qct").version
    assert replace(load_card("qct")).kind == "qct"
