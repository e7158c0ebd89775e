"""Model cards: what a segmenter is, what it expects and what its labels mean (TOML files)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
KINDS = ("qct", "onnx")
LUNG_SIDES = ("right", "left", "any")
LESION_KINDS = {"ground-glass": 1, "consolidation": 2}
REQUIRED = ("name", "version", "kind", "intended_use", "license", "sources")


class CardError(ValueError):
    """A model card that is missing a field or has a value the engine cannot use."""


@dataclass(frozen=True)
class Label:
    """One output label value of a network and what it means for lungs and lesions."""

    value: int
    name: str
    meaning: str = ""
    lung: str | None = None  # "right", "left" or "any" (the side is then found by position)
    lesion: str | None = None  # "ground-glass" or "consolidation" (implies lung "any")


@dataclass(frozen=True)
class ModelCard:
    """The parsed card; ``raw`` keeps every table for model-specific settings."""

    path: Path
    name: str
    version: str
    kind: str
    intended_use: str
    license: str
    sources: tuple[str, ...]
    dims: int = 3
    window_hu: tuple[float, float] = (-1024.0, 3071.0)
    spacing_mm: tuple[float, ...] = ()
    tile: tuple[int, ...] = ()
    margin: int = 0
    batch: int = 1
    file: Path | None = None
    output: str = "scores"  # "scores" (N, K, ...) argmax / threshold, or "labels" (N, ...)
    threshold: float = 0.5  # for a one-channel score output
    lesions: str = "network"  # or "qct-bands": lesions by HU bands inside the network's lungs
    labels: tuple[Label, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def lung_labels(self) -> dict[int, str]:
        """Label value -> lung side for every label that is lung (lesions are lung too)."""
        return {
            label.value: label.lung or "any"
            for label in self.labels
            if label.lung is not None or label.lesion is not None
        }

    @property
    def lesion_labels(self) -> dict[int, int]:
        """Label value -> lesion code (1 ground-glass, 2 consolidation)."""
        return {label.value: LESION_KINDS[label.lesion] for label in self.labels if label.lesion}


def _fail(path: Path, message: str) -> CardError:
    return CardError(f"model card {path.name}: {message}")


def _labels(path: Path, entries: list[dict[str, Any]]) -> tuple[Label, ...]:
    labels = []
    for entry in entries:
        try:
            label = Label(
                value=int(entry["value"]),
                name=str(entry["name"]),
                meaning=str(entry.get("meaning", "")),
                lung=entry.get("lung"),
                lesion=entry.get("lesion"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise _fail(path, f"label {entry!r} needs an integer value and a name") from error
        if label.lung is not None and label.lung not in LUNG_SIDES:
            raise _fail(path, f"label {label.value}: lung must be one of {LUNG_SIDES}")
        if label.lesion is not None and label.lesion not in LESION_KINDS:
            raise _fail(path, f"label {label.value}: lesion must be one of {tuple(LESION_KINDS)}")
        labels.append(label)
    return tuple(labels)


def load_card(path: Path | str) -> ModelCard:
    """Read and check one card; a bare name means ``models/<name>.toml`` of this package."""
    path = Path(path)
    if not path.suffix:
        path = MODELS_DIR / f"{path}.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CardError(f"model card {path}: {error}") from error
    missing = [key for key in REQUIRED if not raw.get(key)]
    if missing:
        raise _fail(path, f"missing {', '.join(missing)}")
    if raw["kind"] not in KINDS:
        raise _fail(path, f"kind must be one of {KINDS}, not {raw['kind']!r}")
    inputs = raw.get("input", {})
    outputs = raw.get("output", {})
    dims = int(inputs.get("dims", 3))
    tile = tuple(int(v) for v in inputs.get("tile", []))
    if dims not in (2, 3):
        raise _fail(path, "input.dims must be 2 or 3")
    if tile and len(tile) != dims:
        raise _fail(path, f"input.tile needs {dims} sizes for a {dims}D model, has {len(tile)}")
    window = tuple(float(v) for v in inputs.get("window_hu", (-1024.0, 3071.0)))
    if len(window) != 2 or window[0] >= window[1]:
        raise _fail(path, "input.window_hu must be [low, high] with low < high")
    spacing = tuple(float(v) for v in inputs.get("spacing_mm", []))
    if spacing and (len(spacing) != 3 or min(spacing) < 0):
        raise _fail(path, "input.spacing_mm must be [z, y, x] (0 keeps an axis native)")
    file = raw.get("file")
    if raw["kind"] == "onnx" and not file:
        raise _fail(path, "an onnx card needs file (the .onnx network, relative to the card)")
    card = ModelCard(
        path=path,
        name=str(raw["name"]),
        version=str(raw["version"]),
        kind=str(raw["kind"]),
        intended_use=str(raw["intended_use"]).strip(),
        license=str(raw["license"]),
        sources=tuple(str(s) for s in raw["sources"]),
        dims=dims,
        window_hu=(window[0], window[1]),
        spacing_mm=spacing,
        tile=tile,
        margin=int(inputs.get("margin", 0)),
        batch=max(1, int(inputs.get("batch", 1))),
        file=(path.parent / file) if file else None,
        output=str(outputs.get("kind", "scores")),
        threshold=float(outputs.get("threshold", 0.5)),
        lesions=str(raw.get("lesions", "network")),
        labels=_labels(path, raw.get("labels", [])),
        raw=raw,
    )
    if card.output not in ("scores", "labels"):
        raise _fail(path, "output.kind must be 'scores' or 'labels'")
    if card.lesions not in ("network", "qct-bands"):
        raise _fail(path, "lesions must be 'network' or 'qct-bands'")
    if card.kind == "onnx" and not card.lung_labels:
        raise _fail(path, "no label is marked as lung (lung = right/left/any)")
    if tile and any(t <= 2 * card.margin for t in tile[-2:]):
        raise _fail(path, "input.margin must be less than half the tile size")
    return card
