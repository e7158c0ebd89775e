"""The parts of qct 2: ellipsoid morphology on ONNX Runtime, grids, 3-D hole filling,
vesselness, and the lung and lesion finders on small synthetic chests built for the
structures real CT has and phantoms lack (a diaphragm dome, gas under a lung base, vessels,
a fissure, an airway wall beside a ground-glass nodule).
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest
from scipy import ndimage

from pulmogate.inference.outputs.seg import _Segmentation
from pulmogate.inference.segment import morphology as morphology_module
from pulmogate.inference.segment.grid import WorkingGrid, pool, unpool
from pulmogate.inference.segment.masks import fill_holes_3d, fill_holes_slicewise
from pulmogate.inference.segment.morphology import Morphology
from pulmogate.inference.segment.qct import QctSegmenter, _dense_box
from pulmogate.inference.segment.qct_graph import Ellipsoid, FrangiParameters, octagon_steps
from pulmogate.inference.segment.vessels import vesselness
from pulmogate.inference.volume import Volume

SPACING = (2.0, 1.0, 1.0)  # synthetic chests: 2 mm slices, 1 mm pixels


@pytest.fixture(scope="module")
def morphology() -> Morphology:
    return Morphology("cpu")


@pytest.fixture(scope="module")
def segmenter() -> QctSegmenter:
    segmenter = QctSegmenter("cpu")
    segmenter.warm_up()
    return segmenter


def reference_dilation(mask: np.ndarray, element: Ellipsoid) -> np.ndarray:
    """scipy: the union over z offsets of the octagon of that offset's radius, shifted."""
    schedule = octagon_steps(max(element.radii))
    square = ndimage.generate_binary_structure(2, 2)
    cross = ndimage.generate_binary_structure(2, 1)
    disks = {0: mask.copy()}
    current = mask.copy()
    for radius in range(1, max(element.radii) + 1):
        shape = square if schedule[radius - 1] else cross
        current = np.stack([ndimage.binary_dilation(plane, shape) for plane in current])
        disks[radius] = current
    out = np.zeros_like(mask)
    for dz, radius in enumerate(element.radii):
        for shift in {dz, -dz}:
            moved = np.zeros_like(mask)
            if shift >= 0:
                moved[shift:] = disks[radius][: mask.shape[0] - shift]
            else:
                moved[:shift] = disks[radius][-shift:]
            out |= moved
    return out


@pytest.mark.parametrize(
    "element",
    [
        Ellipsoid.for_mm(15.0, (1.25, 1.4, 1.4)),
        Ellipsoid.for_mm(2.5, (2.0, 1.2, 1.2)),
        Ellipsoid.flat(3),
        Ellipsoid((2, 2, 1)),
    ],
    ids=["ball-15mm", "ball-2.5mm", "flat-3", "lens"],
)
def test_ellipsoid_dilation_is_the_union_of_shifted_octagons(
    morphology: Morphology, element: Ellipsoid
) -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((40, 60, 60), bool)
    mask[rng.integers(0, 40, 25), rng.integers(0, 60, 25), rng.integers(0, 60, 25)] = True
    assert np.array_equal(morphology.dilate(mask, element), reference_dilation(mask, element))


def test_the_ellipsoid_of_a_ball_reaches_its_radius_in_mm() -> None:
    element = Ellipsoid.for_mm(10.0, (2.0, 0.5, 0.5))
    assert element.rz == 5 and element.radii[0] == 20
    assert element.radii == tuple(sorted(element.radii, reverse=True))


def test_slabs_give_the_result_of_the_whole_array(
    morphology: Morphology, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    mask = rng.random((70, 30, 30)) > 0.93
    steps = [("dilate", Ellipsoid.for_mm(4.0, (1.0, 1.0, 1.0))), ("erode", Ellipsoid.flat(1))]
    whole = morphology.run(mask, steps)
    monkeypatch.setattr(morphology_module, "SLAB", 8)  # many slabs, each with its halo
    assert np.array_equal(morphology.run(mask, steps), whole)


def test_erosion_never_erodes_from_outside_the_array(morphology: Morphology) -> None:
    mask = np.ones((6, 10, 10), bool)
    mask[3, 5, 5] = False
    eroded = morphology.erode(mask, Ellipsoid((1, 1)))
    assert eroded[0, 0, 0] and eroded[-1, -1, -1]  # corners stay
    assert not eroded[3, 5, 5] and not eroded[2, 5, 5] and not eroded[3, 4, 5]


def test_geodesic_growth_stays_inside_what_is_allowed(morphology: Morphology) -> None:
    allowed = np.zeros((5, 20, 40), bool)
    allowed[:, 8:12, :30] = True  # a corridor
    seed = np.zeros_like(allowed)
    seed[2, 10, 0] = True
    grown = morphology.grow(seed, allowed, Ellipsoid((1,)), steps=10)
    assert grown[2, 10, 10] and not grown[2, 10, 11]  # ten steps along the corridor
    assert not np.any(grown & ~allowed & ~seed)


def test_pooling_covers_every_set_voxel_and_the_working_grid_is_about_1_5_mm() -> None:
    rng = np.random.default_rng(2)
    mask = rng.random((3, 7, 9)) > 0.9
    pooled = pool(mask, (1, 2, 2))
    assert pooled.shape == (3, 4, 5)
    assert np.all(unpool(pooled, (1, 2, 2), mask.shape)[mask])
    factors = {
        p: WorkingGrid.for_volume((1, 512, 512), (2.0, p, p), 1.5).factor
        for p in (0.59, 0.75, 0.98, 1.4, 0.35)
    }
    assert factors == {0.59: 2, 0.75: 2, 0.98: 1, 1.4: 1, 0.35: 4}
    grid = WorkingGrid.for_volume((2, 5, 7), (1.0, 0.7, 0.7), 1.5)
    share = grid.pool_share(np.ones((2, 5, 7), bool))
    assert share.shape == grid.shape and np.all(share == 1.0)


def test_only_holes_enclosed_in_3d_are_filled() -> None:
    lung = np.zeros((12, 20, 20), bool)
    lung[2:10, 4:16, 4:16] = True
    lung[4:8, 8:12, 8:12] = False  # a cavity: enclosed in 3-D (a lesion inside a lung)
    assert fill_holes_3d(lung)[5, 10, 10]
    lung[2:4, 9:11, 9:11] = False  # joined to below the block: a dome, not a hole
    assert not fill_holes_3d(lung)[5, 10, 10]
    assert fill_holes_slicewise(lung)[5, 10, 10]  # what slice-wise filling does


def test_vesselness_scores_tubes_not_blobs_or_plates() -> None:
    spacing = (2.0, 1.2, 1.2)
    zz, yy, xx = np.mgrid[0:40, 0:80, 0:80]
    hu = np.full((40, 80, 80), -850.0, np.float32)
    hu[np.hypot((yy - 40) * 1.2, (xx - 20) * 1.2) <= 3.0] = 40.0  # a tube along z
    hu[np.sqrt(((zz - 20) * 2.0) ** 2 + ((yy - 40) * 1.2) ** 2 + ((xx - 60) * 1.2) ** 2) <= 9.0] = (
        40.0
    )
    hu[:, 8:10, :] = -300.0  # a plate in the x-z plane
    hu = ndimage.gaussian_filter(hu, (0.4, 0.6, 0.6))
    score = vesselness(hu, spacing, 3, FrangiParameters(), "cpu")
    assert score[20, 40, 20] > 0.4  # tube
    assert score[20, 40, 60] < 0.13  # blob centre: Frangi's most for a blob is 0.117
    assert score[20, 9, 40] < 0.1  # plate
    assert score[5, 70, 40] < 0.01  # lung


def synthetic_chest(slices: int = 44, seed: int = 0) -> np.ndarray:
    """A body of soft tissue with two lung cylinders (2 mm slices, 1 mm pixels, +-20 HU)."""
    rng = np.random.default_rng(seed)
    ny, nx = 200, 260
    yy, xx = np.mgrid[0:ny, 0:nx]
    plane = np.full((ny, nx), -1000.0, np.float32)
    plane[((yy - 100) / 90.0) ** 2 + ((xx - 130) / 125.0) ** 2 <= 1] = 40.0
    hu = np.repeat(plane[None], slices, axis=0)
    for cx in (70, 190):  # right lung at low x (LPS), left at high x
        lung = ((yy - 100) / 60.0) ** 2 + ((xx - cx) / 45.0) ** 2 <= 1
        hu[4 : slices - 4][:, lung] = -850.0
    hu += rng.normal(0.0, 20.0, hu.shape).astype(np.float32)
    return hu


def as_volume(hu: np.ndarray, spacing: tuple[float, float, float] = SPACING) -> Volume:
    positions = np.array([[0.0, 0.0, k * spacing[0]] for k in range(hu.shape[0])])
    return Volume(np.rint(hu).astype(np.int16), spacing, positions, (1.0, 0, 0, 0, 1.0, 0), [])


def test_a_diaphragm_dome_is_not_filled_into_the_lung(segmenter: QctSegmenter) -> None:
    hu = synthetic_chest()
    zz, yy, xx = np.mgrid[0 : hu.shape[0], 0:200, 0:260]
    # soft tissue rising from below the right lung into it (in mm: 2 mm slices)
    dome = np.sqrt(((zz - 2) * 2.0) ** 2 + (yy - 100.0) ** 2 + (xx - 70.0) ** 2) <= 30.0
    hu[dome] = 50.0 + np.random.default_rng(3).normal(0, 20, int(dome.sum()))
    lungs, lesions = segmenter.segment(as_volume(hu))
    inside_dome = ndimage.binary_erosion(dome, iterations=2)[4:18]  # past its partial volume
    assert np.count_nonzero(lungs[4:18][inside_dome]) < 0.01 * np.count_nonzero(inside_dome)
    assert np.count_nonzero(lesions) * 2.0 < 100.0  # mm3: no consolidation ring on the dome
    # The dome is enclosed by lung in its slices: slice-wise filling would have taken it.
    holes = fill_holes_slicewise(lungs == 1) & ~(lungs == 1)
    assert np.count_nonzero(holes[8] & dome[8]) > 0.5 * np.count_nonzero(dome[8])


def test_gas_under_a_lung_base_joined_by_partial_volume_is_not_lung(
    segmenter: QctSegmenter,
) -> None:
    hu = synthetic_chest()
    zz, yy, xx = np.mgrid[0 : hu.shape[0], 0:200, 0:260]
    bubble = ((zz * 2.0 / 6.0) ** 2 + ((yy - 110) / 30.0) ** 2 + ((xx - 190) / 25.0) ** 2) <= 1
    hu[bubble] = -1000.0  # stomach gas under the left lung (slices 0 to 2) ...
    hu[3, 100:120, 180:200] = -600.0  # ... its wall and the diaphragm cut obliquely (slice 3)
    lungs, _ = segmenter.segment(as_volume(hu))
    gas_only = bubble
    assert np.count_nonzero(lungs[gas_only]) < 0.02 * np.count_nonzero(gas_only)
    assert np.count_nonzero(lungs == 2) * 2e-3 > 200.0  # ml: the left lung is still found


def test_vessels_a_fissure_and_an_airway_wall_are_not_lesions_a_nodule_is(
    segmenter: QctSegmenter,
) -> None:
    hu = synthetic_chest(seed=4)
    zz, yy, xx = np.mgrid[0 : hu.shape[0], 0:200, 0:260]
    structures = np.zeros(hu.shape, bool)
    for radius, y0 in ((1.0, 60), (2.0, 80), (3.0, 120), (5.0, 140)):  # vessels along z
        tube = np.hypot(yy - y0, xx - 60.0) <= radius
        structures |= tube & (zz >= 6) & (zz < 38)
    oblique = np.hypot((yy - 100.0) - 0.5 * (xx - 170.0), (zz - 22.0) * 2.0) <= 3.0
    structures |= oblique & (np.abs(xx - 190) < 40)  # a vessel through the left lung
    hu[structures] = 40.0
    fissure = (np.abs((yy - 100) + (xx - 190) * 0.8 - (zz - 22) * 1.5) <= 1.0) & (
        np.abs(xx - 190) < 35
    )
    hu[fissure & (hu < -500)] = -600.0  # partial volume of a thin plate
    wall = (np.abs(np.hypot(yy - 100.0, xx - 215.0) - 5.0) <= 1.2) & (zz >= 8) & (zz < 36)
    hu[wall] = 0.0
    hu[(np.hypot(yy - 100.0, xx - 215.0) < 3.8) & (zz >= 8) & (zz < 36)] = -1000.0
    nodule = np.sqrt(((zz - 22) * 2.0) ** 2 + (yy - 60.0) ** 2 + (xx - 190.0) ** 2) <= 9.0
    hu[nodule] = -600.0 + np.random.default_rng(5).normal(0, 20, int(nodule.sum()))
    lungs, lesions = segmenter.segment(as_volume(hu))
    found = lesions > 0
    voxel_mm3 = 2.0
    assert np.count_nonzero(found & nodule) > 0.7 * np.count_nonzero(nodule)
    outside_nodule = found & ~ndimage.binary_dilation(nodule, iterations=2)
    assert np.count_nonzero(outside_nodule) * voxel_mm3 < 300.0  # mm3, of 2 x 600 ml of lung
    assert np.count_nonzero(lungs) * voxel_mm3 / 1000.0 > 2 * 400.0  # ml: lungs kept


def test_body_box_gives_the_masks_of_the_whole_slices(segmenter: QctSegmenter) -> None:
    hu = np.full((30, 300, 340), -1000.0, np.float32)
    hu[:, 50:250, 40:300] = synthetic_chest(slices=30)
    volume = as_volume(hu)
    box = _dense_box(volume.hu, segmenter.bands.body_above, segmenter._margin_px(volume.spacing))
    assert box is not None and box[1].stop - box[1].start < volume.hu.shape[1]  # a real crop
    lungs, lesions = segmenter.segment(volume)
    whole_lungs, whole_lesions = segmenter._segment_box(volume.hu, volume)
    assert np.count_nonzero(lungs) > 0
    assert np.array_equal(lungs, whole_lungs)
    assert np.array_equal(lesions, whole_lesions)


@pytest.mark.parametrize("overlap", [True, False])
def test_seg_overlap_check_agrees_with_highdicom(overlap: bool) -> None:
    stack = np.zeros((20, 16, 16, 3), bool)
    stack[2:9, 2:9, 2:9, 0] = True
    stack[12:18, 3:6, 3:6, 1] = True
    stack[4:6, 4:6, 4:6, 2] = overlap  # inside segment 1, or nowhere
    numbers = np.array([1, 2, 3])
    binary = hd.seg.SegmentationTypeValues.BINARY
    ours = _Segmentation._check_and_cast_pixel_array(stack, numbers, binary, np.uint8)
    theirs = hd.seg.Segmentation._check_and_cast_pixel_array(stack, numbers, binary, np.uint8)
    assert ours[1] == theirs[1]
    assert ours[1] == (
        hd.seg.SegmentsOverlapValues.YES if overlap else hd.seg.SegmentsOverlapValues.NO
    )
    assert ours[0] is stack
