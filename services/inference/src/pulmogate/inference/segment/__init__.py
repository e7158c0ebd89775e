"""Segmenters: lungs (1 right, 2 left) and lesions (1 ground-glass, 2 consolidation)."""

from __future__ import annotations

from pathlib import Path

from pulmogate.inference.segment.base import Segmenter
from pulmogate.inference.segment.card import ModelCard, load_card


def load_segmenter(model: str | Path = "qct", providers: str = "auto") -> Segmenter:
    """The segmenter a model card describes (a card path, or a card name in models/).

    Sessions are created here, once per process and card, and warmed up with one run.
    """
    card: ModelCard = load_card(model)
    segmenter: Segmenter
    if card.kind == "qct":
        from pulmogate.inference.segment.qct import QctSegmenter

        segmenter = QctSegmenter(providers, card=card)
    else:
        from pulmogate.inference.segment.onnx_model import OnnxSegmenter

        segmenter = OnnxSegmenter(card, providers)
    segmenter.warm_up()
    return segmenter


__all__ = ["ModelCard", "Segmenter", "load_card", "load_segmenter"]
