"""Tiles over the spatial axes of an array: read with context, write back only the interior."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    """Where a tile is read (``read``) and which part of its output is kept (``keep``)."""

    read: tuple[slice, ...]  # in the padded array
    keep: tuple[slice, ...]  # in the tile's own output
    write: tuple[slice, ...]  # in the result (shaped like the padded array)


def _origins(length: int, tile: int, margin: int) -> list[int]:
    """Start of each tile along one axis so that the kept interiors cover it exactly once."""
    if length <= tile:
        return [0]
    stride = tile - 2 * margin
    origins = list(range(0, length - tile, stride))
    origins.append(length - tile)
    return origins


def tiles(shape: tuple[int, ...], tile: tuple[int, ...], margin: int) -> Iterator[Tile]:
    """Tiles of size ``tile`` over an array of ``shape`` (each axis at least ``tile`` long).

    A tile's outer ``margin`` voxels are context only: the network sees them but its output
    there is dropped, except at the array's own edges. With a network whose receptive field
    reaches no further than ``margin``, the stitched result equals a run on the whole array.
    """
    per_axis = []
    for length, size in zip(shape, tile, strict=True):
        axis = []
        for origin in _origins(length, size, margin):
            lo = origin + margin if origin > 0 else 0
            hi = origin + size - margin if origin + size < length else origin + size
            axis.append((slice(origin, origin + size), slice(lo - origin, hi - origin), (lo, hi)))
        per_axis.append(axis)
    for combo in itertools.product(*per_axis):
        yield Tile(
            read=tuple(c[0] for c in combo),
            keep=tuple(c[1] for c in combo),
            write=tuple(slice(*c[2]) for c in combo),
        )
