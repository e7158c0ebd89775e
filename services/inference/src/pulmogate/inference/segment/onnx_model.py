"""The neural model slot: any ONNX segmentation network described by a model card.

The card says how to feed the network (HU window, spacing, 2D slices or 3D blocks, tile
size, context margin, batch) and what each output label means (right/left/any lung,
ground-glass, consolidation). Volumes are windowed to [0, 1], resampled to the card's
spacing if it names one, tiled, run in batches and stitched; labels are mapped to the
engine's lungs (1 right, 2 left) and lesions (1 ground-glass, 2 consolidation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from scipy import ndimage

from pulmogate.inference.segment.card import CardError, ModelCard, load_card
from pulmogate.inference.segment.onnx_runtime import cached_session
from pulmogate.inference.segment.tiling import tiles

if TYPE_CHECKING:
    from pathlib import Path

    from pulmogate.inference.volume import Volume


def _resample(array: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    """``array`` zoomed to exactly ``shape`` (order 1 for images, 0 for labels)."""
    if array.shape == shape:
        return array
    factors = [t / s for t, s in zip(shape, array.shape, strict=True)]
    zoomed = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
    out = np.zeros(shape, zoomed.dtype)
    common = tuple(slice(0, min(a, b)) for a, b in zip(shape, zoomed.shape, strict=True))
    out[common] = zoomed[common]
    return out


class OnnxSegmenter:
    """Runs the card's ONNX network with tiling and batching; one cached session per process."""

    def __init__(self, card: ModelCard | Path | str, providers: str = "auto") -> None:
        self.model_card = card if isinstance(card, ModelCard) else load_card(card)
        if self.model_card.kind != "onnx" or self.model_card.file is None:
            raise ValueError(f"{self.model_card.path.name} is not an onnx model card")
        self.name = self.model_card.name
        self.version = self.model_card.version
        self.card = str(self.model_card.path)
        self.providers = providers
        file = self.model_card.file
        if not file.is_file():
            raise CardError(
                f"model card {self.model_card.path.name}: network file {file} not found "
                "(the card's header says how to obtain it)"
            )
        self.session = cached_session(
            f"onnx:{file.resolve()}", lambda: onnx.load(str(file)), providers
        )
        self.input_name = self.session.get_inputs()[0].name

    def warm_up(self) -> None:
        """Run one batch of zeros so the first study does not pay for lazy initialisation."""
        tile = self.model_card.tile or (8, 64, 64)[-self.model_card.dims :]
        batch = np.zeros((self.model_card.batch, 1, *tile), np.float32)
        self.session.run(None, {self.input_name: batch})

    def segment(self, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
        """Return (lungs, lesions) uint8 masks shaped like the volume."""
        card = self.model_card
        low, high = card.window_hu
        image = (np.clip(volume.hu, low, high).astype(np.float32) - low) / (high - low)
        work_shape = self._work_shape(volume)
        image = _resample(image, work_shape, order=1)
        labels = self._predict(image)
        labels = _resample(labels, volume.hu.shape, order=0)
        return self._map(labels, volume)

    def _work_shape(self, volume: Volume) -> tuple[int, ...]:
        """The volume's shape at the card's spacing (0 or no spacing keeps an axis native)."""
        if not self.model_card.spacing_mm:
            return volume.hu.shape
        return tuple(
            max(1, round(n * have / want)) if want > 0 else n
            for n, have, want in zip(
                volume.hu.shape, volume.spacing, self.model_card.spacing_mm, strict=True
            )
        )

    def _predict(self, image: np.ndarray) -> np.ndarray:
        """Label map of ``image`` (z, y, x): tiles in batches, interiors stitched."""
        card = self.model_card
        # 2D: slices are the items, tiles run over (y, x); 3D: one item, tiles over (z, y, x).
        items = image if card.dims == 2 else image[None]
        spatial = items.shape[1:]
        tile = card.tile or spatial
        pad = [(0, 0)] + [(0, max(t - s, 0)) for t, s in zip(tile, spatial, strict=True)]
        items = np.pad(items, pad, mode="constant", constant_values=0.0)  # 0 = window floor
        result = np.zeros(items.shape, np.uint8)
        grid = list(tiles(items.shape[1:], tile, card.margin))
        jobs = [(i, t) for i in range(items.shape[0]) for t in grid]
        for start in range(0, len(jobs), card.batch):
            chunk = jobs[start : start + card.batch]
            batch = np.stack([items[i][t.read] for i, t in chunk])[:, None]
            out = self.session.run(None, {self.input_name: batch})[0]
            predicted = self._labels(out)
            for (i, t), labels in zip(chunk, predicted, strict=True):
                result[i][t.write] = labels[t.keep]
        result = result[(slice(None), *(slice(0, s) for s in spatial))]
        return result if card.dims == 2 else result[0]

    def _labels(self, out: np.ndarray) -> np.ndarray:
        """(B, K, ...) scores -> (B, ...) labels; label outputs pass through."""
        if self.model_card.output == "labels":
            return out.reshape(out.shape[0], *out.shape[-self.model_card.dims :]).astype(np.uint8)
        if out.shape[1] == 1:
            return (out[:, 0] > self.model_card.threshold).astype(np.uint8)
        return np.argmax(out, axis=1).astype(np.uint8)

    def _map(self, labels: np.ndarray, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
        """Network labels -> lungs (1 right, 2 left) and lesions (1 GGO, 2 consolidation)."""
        card = self.model_card
        lut_side = np.zeros(256, np.uint8)  # 1 right, 2 left, 3 either
        for value, side in card.lung_labels.items():
            lut_side[value] = {"right": 1, "left": 2, "any": 3}[side]
        side = lut_side[labels]
        lungs = np.where(side == 3, 0, side).astype(np.uint8)
        either = side == 3
        if either.any():
            lungs[either] = _side_by_position(side > 0, volume)[either]
        if card.lesions == "qct-bands":
            from pulmogate.inference.segment.qct import QctSegmenter

            return lungs, QctSegmenter(self.providers).lesions_in(volume, lungs)
        lut_lesion = np.zeros(256, np.uint8)
        for value, code in card.lesion_labels.items():
            lut_lesion[value] = code
        lesions = np.where(lungs > 0, lut_lesion[labels], 0).astype(np.uint8)
        return lungs, lesions


def _side_by_position(lung: np.ndarray, volume: Volume) -> np.ndarray:
    """1 (right) or 2 (left) for every voxel by its side of the lungs' middle x."""
    columns = np.flatnonzero(lung.any(axis=(0, 1)))
    middle = 0.5 * (columns[0] + columns[-1]) if columns.size else lung.shape[2] / 2
    right_is_low_x = volume.orientation[0] >= 0 if volume.orientation else True
    low = (np.arange(lung.shape[2]) < middle)[None, None, :]
    right = low if right_is_low_x else ~low
    return np.where(right, 1, 2).astype(np.uint8) * lung
