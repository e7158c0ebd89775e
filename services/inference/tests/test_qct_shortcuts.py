"""The qct speed shortcuts (body box, pooled lung growth, SEG overlap check) keep results.

A 512² phantom of 0.7 mm pixels (a 358 mm field of view) with 48 slices of 2.5 mm: fine
enough for the growth to be pooled 2x2, about three seconds per segmentation.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest

from pulmogate.common.phantom import make_phantom
from pulmogate.inference.outputs.seg import _Segmentation
from pulmogate.inference.segment.qct import (
    QctSegmenter,
    QctSettings,
    _dense_box,
    _expand,
    _growth_factor,
    _pool_any,
)
from pulmogate.inference.volume import Volume


@pytest.fixture(scope="module")
def volume() -> Volume:
    phantom = make_phantom(
        slices=48, size=512, slice_thickness_mm=2.5, pixel_spacing_mm=0.7, involvement=0.45
    )
    positions = np.array([[0.0, 0.0, k * 2.5] for k in range(48)])
    return Volume(phantom.hu, phantom.spacing, positions, (1.0, 0, 0, 0, 1.0, 0), [])


@pytest.fixture(scope="module")
def segmenter() -> QctSegmenter:
    segmenter = QctSegmenter("cpu")
    segmenter.warm_up()
    return segmenter


def test_growth_factor_pools_fine_pixels_only() -> None:
    # (step in pixels, pixel mm) -> factor: 0.7 mm pools 2x2, 0.5 mm 3x3, 0.93 mm and up not
    assert _growth_factor(4, 0.7, 2.0) == 2
    assert _growth_factor(6, 0.5, 2.0) == 3
    assert _growth_factor(3, 0.93, 2.0) == 1
    assert _growth_factor(2, 1.4, 2.0) == 1
    assert _growth_factor(4, 0.7, 0.0) == 1


def test_pool_any_and_expand_cover_every_set_pixel() -> None:
    rng = np.random.default_rng(1)
    mask = rng.random((3, 7, 9)) > 0.9
    pooled = _pool_any(mask, 2)
    assert pooled.shape == (3, 4, 5)
    back = _expand(pooled, 2, mask.shape)
    assert back.shape == mask.shape
    assert np.all(back[mask])  # every set pixel's block is set
    assert pooled[0, 0, 0] == mask[0, :2, :2].any()


def test_body_box_gives_the_masks_of_the_whole_slices(
    volume: Volume, segmenter: QctSegmenter
) -> None:
    box = _dense_box(volume.hu, segmenter.bands.body_above, segmenter._margin_px(volume.spacing))
    assert box is not None and box[1].stop - box[1].start < volume.hu.shape[1]  # a real crop
    lungs, lesions = segmenter.segment(volume)
    whole_lungs, whole_lesions = segmenter._segment_box(volume.hu, volume)
    assert np.count_nonzero(lungs) > 0 and np.count_nonzero(lesions) > 0
    assert np.array_equal(lungs, whole_lungs)
    assert np.array_equal(lesions, whole_lesions)


def test_pooled_growth_matches_full_resolution_growth(
    volume: Volume, segmenter: QctSegmenter
) -> None:
    full = QctSegmenter("cpu", settings=QctSettings(growth_pixel_mm=0.0))
    lungs, lesions = segmenter.segment(volume)
    full_lungs, full_lesions = full.segment(volume)
    changed = np.count_nonzero(lungs != full_lungs) + np.count_nonzero(lesions != full_lesions)
    assert changed <= 0.001 * np.count_nonzero(full_lungs)


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
