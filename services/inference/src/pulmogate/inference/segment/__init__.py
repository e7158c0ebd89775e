"""Segmenters: lungs (1 right, 2 left) and lesions (1 ground-glass, 2 consolidation)."""

from pulmogate.inference.segment.base import Segmenter

__all__ = ["Segmenter"]
