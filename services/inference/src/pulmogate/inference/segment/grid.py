"""The working grid of the qct model: fine pixels averaged into blocks of about 1.5 mm."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WorkingGrid:
    """In-plane pooling ``factor`` of a volume and the spacings of both grids."""

    factor: int
    fine_spacing: tuple[float, float, float]
    fine_shape: tuple[int, int, int]

    @classmethod
    def for_volume(
        cls, shape: tuple[int, ...], spacing: tuple[float, float, float], pixel_mm: float
    ) -> WorkingGrid:
        """The largest in-plane factor whose pooled pixel is at most ``pixel_mm`` (1 keeps
        the fine pixels; slices are never pooled)."""
        pixel = min(spacing[1], spacing[2])
        factor = max(1, math.floor(pixel_mm / pixel + 1e-6)) if pixel_mm > 0 else 1
        return cls(factor, spacing, (int(shape[0]), int(shape[1]), int(shape[2])))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Spacing of the working grid (z, y, x) in mm."""
        z, y, x = self.fine_spacing
        return (z, y * self.factor, x * self.factor)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the working grid (blocks at the far edges may be partial)."""
        nz, ny, nx = self.fine_shape
        return (nz, -(-ny // self.factor), -(-nx // self.factor))

    @property
    def voxel_mm3(self) -> float:
        """Volume of one working voxel."""
        return float(np.prod(self.spacing))

    def expand(self, coarse: np.ndarray) -> np.ndarray:
        """Each working voxel repeated over its fine pixels, cut to the fine shape."""
        if self.factor == 1:
            return coarse
        f = self.factor
        fine = np.repeat(np.repeat(coarse, f, axis=1), f, axis=2)
        return fine[:, : self.fine_shape[1], : self.fine_shape[2]]

    def pool_share(self, fine: np.ndarray) -> np.ndarray:
        """The share of set fine pixels in each working voxel (float32)."""
        if self.factor == 1:
            return fine.astype(np.float32)
        f = self.factor
        nz, ny, nx = self.shape
        padded = np.zeros((nz, ny * f, nx * f), np.float32)
        padded[:, : fine.shape[1], : fine.shape[2]] = fine
        counts = padded.reshape(nz, ny, f, nx, f).sum(axis=(2, 4))
        full = np.zeros((ny * f, nx * f), np.float32)
        full[: fine.shape[1], : fine.shape[2]] = 1.0
        return counts / np.maximum(full.reshape(ny, f, nx, f).sum(axis=(1, 3)), 1.0)


def pool(mask: np.ndarray, factors: tuple[int, int, int], share: float = 0.0) -> np.ndarray:
    """(z, y, x) bool -> blocks of ``factors``: set where more than ``share`` of the block's
    voxels are (0: any voxel; blocks at the far edges may be partial)."""
    fz, fy, fx = factors
    nz, ny, nx = mask.shape
    shape = (-(-nz // fz), -(-ny // fy), -(-nx // fx))
    padded = np.zeros((shape[0] * fz, shape[1] * fy, shape[2] * fx), np.float32)
    padded[:nz, :ny, :nx] = mask
    blocks = padded.reshape(shape[0], fz, shape[1], fy, shape[2], fx)
    if share <= 0.0:
        return blocks.max(axis=(1, 3, 5)) > 0
    return blocks.mean(axis=(1, 3, 5)) > share


def unpool(coarse: np.ndarray, factors: tuple[int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    """Each block of ``pool`` repeated over its voxels, cut to ``shape``."""
    fz, fy, fx = factors
    fine = np.repeat(np.repeat(np.repeat(coarse, fz, axis=0), fy, axis=1), fx, axis=2)
    return fine[: shape[0], : shape[1], : shape[2]]
