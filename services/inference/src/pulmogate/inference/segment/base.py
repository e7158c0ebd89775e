"""The one interface every lung and lesion segmenter implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from pulmogate.inference.volume import Volume


@runtime_checkable
class Segmenter(Protocol):
    """Segments a CT volume into lungs (0/1 right/2 left) and lesions (0/1 GGO/2 consolidation)."""

    name: str
    version: str
    card: str  # path or text of the model card

    def warm_up(self) -> None:
        """Create the inference sessions and run them once on a small input."""
        ...

    def segment(self, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
        """Return (lungs, lesions), both uint8 arrays shaped like ``volume.hu``."""
        ...
