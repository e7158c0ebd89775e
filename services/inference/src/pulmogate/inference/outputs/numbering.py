"""Slice numbers as the source series numbers them, so results scroll with the CT.

The volume holds its slices sorted along the slice normal (feet to head for an axial series);
scanners number them either way, most head to feet. An overlay image carries the
InstanceNumber of its source slice, and the burned-in "Slice N/M" and the summary's "#N"
show that number, so a viewer shows overlay N beside CT image N and both series scroll the
same way. When the source's InstanceNumbers cannot serve (one is missing, not a number, or
two slices share one) the slices are numbered 1..M in the volume's order, and said so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pydicom

from pulmogate.inference import header as attr

if TYPE_CHECKING:
    from pulmogate.inference.volume import Volume


@dataclass(frozen=True)
class SliceNumbers:
    """The number of each slice of a volume (by z index), and how to label it."""

    numbers: tuple[int, ...]
    from_source: bool

    def number(self, z: int) -> int:
        """The InstanceNumber of slice ``z`` (its source's, or its place in the volume)."""
        return self.numbers[z]

    def label(self, z: int) -> str:
        """ "N/M" when the slices are numbered 1..M (as most series are), else "N"."""
        count = len(self.numbers)
        if sorted(self.numbers) == list(range(1, count + 1)):
            return f"{self.numbers[z]}/{count}"
        return str(self.numbers[z])

    def in_source_order(self, slices: list[int]) -> list[int]:
        """``slices`` (z indices) sorted by their number, as a viewer lists the source."""
        return sorted(slices, key=self.number)


def _instance_number(header: pydicom.Dataset) -> int | None:
    try:
        return attr.integer(header, "InstanceNumber")
    except attr.BadValue:
        return None


def slice_numbers(volume: Volume) -> SliceNumbers:
    """The source's InstanceNumbers when each slice has its own, else 1..M along z."""
    found = [_instance_number(h) for h in volume.headers]
    usable = [n for n in found if n is not None]
    if len(usable) == len(found) and len(set(usable)) == len(usable):
        return SliceNumbers(tuple(usable), from_source=True)
    return SliceNumbers(tuple(range(1, len(found) + 1)), from_source=False)
