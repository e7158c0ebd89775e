"""The neural model slot: a small ONNX network built here runs end to end through its card.

The networks are real ONNX graphs (a 3x3 or 3x3x3 mean convolution, then a 1x1 convolution
that scores each class by its distance to a class centre in windowed intensity): no trained
weights exist here, but the plumbing (card, window, resampling, tiling, batching, stitching,
label mapping, lesions, sessions) is the same as for a converted U-Net.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pulmogate.inference.analysis import analyse
from pulmogate.inference.segment import load_card, load_segmenter
from pulmogate.inference.segment.card import CardError
from pulmogate.inference.segment.onnx_model import OnnxSegmenter
from pulmogate.inference.volume import Volume
from pulmogate.tools.phantom import Phantom, make_phantom

WINDOW = (-1100.0, 200.0)
# Class centres in HU: outside air, lung (aerated and ground-glass), soft tissue and fat.
CENTRES_HU = (-1000.0, -820.0, -30.0)
GGO_CENTRES_HU = (-1000.0, -850.0, -600.0, 0.0)  # air, lung, ground-glass, tissue


def _network(path: Path, dims: int, centres_hu: tuple[float, ...]) -> Path:
    """Save a mean-filter + nearest-centre classifier as ONNX (opset 17) at ``path``."""
    k = len(centres_hu)
    centres = [(c - WINDOW[0]) / (WINDOW[1] - WINDOW[0]) for c in centres_hu]
    box = [3] * dims
    mean = np.full([1, 1, *box], 1.0 / 3**dims, np.float32)
    # argmin_k (x - c_k)^2 == argmax_k (2 c_k x - c_k^2): a 1x1 convolution.
    weight = np.array([2 * c for c in centres], np.float32).reshape([k, 1] + [1] * dims)
    bias = np.array([-(c**2) for c in centres], np.float32)
    spatial = ["h", "w"] if dims == 2 else ["d", "h", "w"]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "mean"], ["smooth"], pads=[1] * 2 * dims),
            helper.make_node("Conv", ["smooth", "weight", "bias"], ["scores"]),
        ],
        f"toy_{dims}d",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, *spatial])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", k, *spatial])],
        initializer=[
            numpy_helper.from_array(mean, "mean"),
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _card(
    folder: Path,
    name: str,
    *,
    dims: int = 2,
    tile: list[int] | None = None,
    margin: int = 0,
    batch: int = 1,
    spacing: list[float] | None = None,
    lesions: str = "qct-bands",
    centres: tuple[float, ...] = CENTRES_HU,
    labels: str = "",
) -> Path:
    """Write a network and its card into ``folder``; return the card's path."""
    network = _network(folder / f"{name}.onnx", dims, centres)
    labels = labels or (
        '[[labels]]\nvalue = 0\nname = "outside air"\n\n'
        '[[labels]]\nvalue = 1\nname = "lung"\nlung = "any"\n\n'
        '[[labels]]\nvalue = 2\nname = "soft tissue"\n'
    )
    card = folder / f"{name}.toml"
    card.write_text(
        f'name = "{name}"\nversion = "0.0.1"\nkind = "onnx"\nfile = "{network.name}"\n'
        'intended_use = "tests of the model slot"\nlicense = "Apache-2.0"\n'
        'sources = ["built in test_onnx_slot.py"]\n'
        f'lesions = "{lesions}"\n\n'
        f"[input]\ndims = {dims}\nwindow_hu = {list(WINDOW)}\n"
        f"tile = {tile or []}\nmargin = {margin}\nbatch = {batch}\n"
        f"spacing_mm = {spacing or []}\n\n{labels}",
        encoding="utf-8",
    )
    return card


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 2.0 * np.count_nonzero(a & b) / total if total else 1.0


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom(
        slices=24, size=128, slice_thickness_mm=2.5, pixel_spacing_mm=2.8, involvement=0.1, seed=8
    )


@pytest.fixture(scope="module")
def volume(phantom: Phantom) -> Volume:
    nz = phantom.hu.shape[0]
    positions = np.array([[0.0, 0.0, 2.5 * k] for k in range(nz)])
    return Volume(phantom.hu, phantom.spacing, positions, (1.0, 0, 0, 0, 1.0, 0), [])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def test_2d_network_end_to_end(folder: Path, volume: Volume, phantom: Phantom) -> None:
    segmenter = load_segmenter(_card(folder, "toy2d", tile=[48, 48], margin=2, batch=5), "cpu")
    analysis = analyse(volume, segmenter)
    assert (analysis.model_name, analysis.model_version) == ("toy2d", "0.0.1")
    truth = phantom.lungs
    # The toy network sees aerated lung and ground-glass as lung, not consolidation or
    # vessels (and their blurred rims): Dice stays well below 1. Swapped sides give ~0.
    assert dice(analysis.lungs > 0, truth > 0) >= 0.75
    for side in (1, 2):  # 1 right = low x in LPS; the side comes from position
        assert dice(analysis.lungs == side, truth == side) >= 0.75
    ggo = phantom.lesions == 1
    assert dice(analysis.lesions == 1, ggo) >= 0.6  # qct bands inside the network's lungs
    assert analysis.grade >= 1


def test_tiles_and_batches_stitch_to_the_whole_slice_result(folder: Path, volume: Volume) -> None:
    whole = OnnxSegmenter(_card(folder, "whole2d"), "cpu").segment(volume)
    tiled = OnnxSegmenter(_card(folder, "tiled2d", tile=[40, 56], margin=3, batch=7), "cpu")
    for expected, got in zip(whole, tiled.segment(volume), strict=True):
        np.testing.assert_array_equal(got, expected)
    padded = OnnxSegmenter(_card(folder, "padded2d", tile=[160, 160], batch=4), "cpu")
    for expected, got in zip(whole, padded.segment(volume), strict=True):  # tile > slice
        np.testing.assert_array_equal(got, expected)


def test_3d_network_tiled_in_blocks(folder: Path, volume: Volume, phantom: Phantom) -> None:
    whole = OnnxSegmenter(_card(folder, "whole3d", dims=3), "cpu").segment(volume)
    card = _card(folder, "tiled3d", dims=3, tile=[10, 48, 48], margin=2, batch=3)
    tiled = OnnxSegmenter(card, "cpu")
    tiled.warm_up()
    lungs, lesions = tiled.segment(volume)
    np.testing.assert_array_equal(lungs, whole[0])
    np.testing.assert_array_equal(lesions, whole[1])
    assert dice(lungs > 0, phantom.lungs > 0) >= 0.75


def test_volume_is_resampled_to_the_card_spacing(folder: Path, volume: Volume) -> None:
    native = OnnxSegmenter(_card(folder, "native"), "cpu").segment(volume)[0]
    coarse = OnnxSegmenter(_card(folder, "coarse", spacing=[5.0, 4.2, 4.2]), "cpu")
    lungs = coarse.segment(volume)[0]
    assert lungs.shape == volume.hu.shape
    assert dice(lungs > 0, native > 0) >= 0.85


def test_lesion_labels_from_the_network(folder: Path, volume: Volume, phantom: Phantom) -> None:
    labels = (
        '[[labels]]\nvalue = 0\nname = "outside air"\n\n'
        '[[labels]]\nvalue = 1\nname = "lung"\nlung = "any"\n\n'
        '[[labels]]\nvalue = 2\nname = "ground-glass"\nlesion = "ground-glass"\n\n'
        '[[labels]]\nvalue = 3\nname = "tissue"\n'
    )
    card = _card(
        folder, "ggo2d", lesions="network", centres=GGO_CENTRES_HU, labels=labels, tile=[64, 64]
    )
    lungs, lesions = OnnxSegmenter(card, "cpu").segment(volume)
    assert set(np.unique(lesions)) <= {0, 1}
    assert not np.any(lesions[lungs == 0])  # lesions are lung
    truth = phantom.lesions == 1
    # The toy also calls blurred vessel and pleura edges ground-glass: check recall only.
    assert np.count_nonzero((lesions == 1) & truth) >= 0.7 * np.count_nonzero(truth)


def test_one_session_per_network(folder: Path) -> None:
    card = _card(folder, "shared")
    assert OnnxSegmenter(card, "cpu").session is OnnxSegmenter(card, "cpu").session


def test_cards_are_checked(folder: Path) -> None:
    bad = folder / "bad.toml"
    bad.write_text('name = "x"\nkind = "onnx"\n', encoding="utf-8")
    with pytest.raises(CardError, match="missing version, intended_use, license, sources"):
        load_card(bad)
    good = _card(folder, "checked").read_text(encoding="utf-8")
    bad.write_text(good.replace("tile = []", "tile = [1, 64, 64]"), encoding="utf-8")
    with pytest.raises(CardError, match=r"input\.tile needs 2 sizes for a 2D model, has 3"):
        load_card(bad)
    bad.write_text(good.replace('lung = "any"', 'lung = "middle"'), encoding="utf-8")
    with pytest.raises(CardError, match="lung must be one of"):
        load_card(bad)
    bad.write_text(good.replace('file = "checked.onnx"', 'file = "absent.onnx"'), "utf-8")
    with pytest.raises(CardError, match=r"network file .*absent\.onnx not found"):
        OnnxSegmenter(bad, "cpu")


def test_shipped_cards_parse() -> None:
    qct = load_card("qct")
    example = load_card("lungmask-r231")
    for card in (qct, example):
        assert card.name and card.version and card.intended_use and card.license
        assert card.sources
    assert (qct.kind, example.kind) == ("qct", "onnx")
    assert example.dims == 2 and example.tile == (256, 256)
    assert example.lung_labels == {1: "right", 2: "left"}
    assert example.file is not None and example.file.name == "lungmask-r231.onnx"
