"""ONNX graphs of the qct model, built in code: HU bands, smoothing and separable morphology."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import onnx
from onnx import TensorProto, helper

OPSET = 17
VOLUME_SHAPE: list[str | int | None] = [1, "channels", "z", "y", "x"]


@dataclass(frozen=True)
class Bands:
    """Hounsfield bands (Lung CT Analyzer defaults; the card models/qct.toml may set them)."""

    air_below: float = -400.0  # aerated lung and air: below the "collapsed" band
    dark_air_below: float = -950.0  # airway lumen and outside air (emphysema band floor)
    body_above: float = -500.0
    ground_glass: tuple[float, float] = (-750.0, -400.0)  # "infiltrated"
    consolidation: tuple[float, float] = (-400.0, 0.0)  # "collapsed"

    @classmethod
    def from_card(cls, table: dict[str, Any]) -> Bands:
        """Bands from a card's [bands_hu] table; missing entries keep the defaults."""
        default = cls()
        ggo = table.get("ground_glass", default.ground_glass)
        consolidation = table.get("consolidation", default.consolidation)
        return cls(
            air_below=float(table.get("air_below", default.air_below)),
            dark_air_below=float(table.get("dark_air_below", default.dark_air_below)),
            body_above=float(table.get("body_above", default.body_above)),
            ground_glass=(float(ggo[0]), float(ggo[1])),
            consolidation=(float(consolidation[0]), float(consolidation[1])),
        )

    @property
    def key(self) -> str:
        """A short text that tells sessions built from different bands apart."""
        return ",".join(
            f"{v:g}"
            for v in (
                self.air_below,
                self.dark_air_below,
                self.body_above,
                *self.ground_glass,
                *self.consolidation,
            )
        )


MAX_POOL_PIECE = 9  # a box of size a+b-1 is a box of a then one of b; short ones run faster


def _pieces(size: int) -> list[int]:
    """Odd kernel sizes <= MAX_POOL_PIECE whose chained boxes make one box of ``size``."""
    pieces = []
    while size > MAX_POOL_PIECE:
        pieces.append(MAX_POOL_PIECE)
        size -= MAX_POOL_PIECE - 1
    if size > 1:
        pieces.append(size if size % 2 else size + 1)
    return pieces


class _Graph:
    """A small helper that names nodes and constants while a graph is built."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def op(self, op_type: str, inputs: list[str], **attributes: Any) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attributes))
        return out

    def const(self, value: float) -> str:
        name = self.name("const")
        self.initializers.append(helper.make_tensor(name, TensorProto.FLOAT, [], [value]))
        return name

    def dilate(self, x: str, kernel: tuple[int, int, int]) -> str:
        """Flat max filter (MaxPool, stride 1, same size) with a (z, y, x) box kernel."""
        pads = [k // 2 for k in kernel] * 2
        return self.op("MaxPool", [x], kernel_shape=list(kernel), pads=pads, strides=[1, 1, 1])

    def erode(self, x: str, kernel: tuple[int, int, int]) -> str:
        """Flat min filter as -MaxPool(-x)."""
        return self.op("Neg", [self.dilate(self.op("Neg", [x]), kernel)])

    def dilate_separable(self, x: str, kernel: tuple[int, int, int]) -> str:
        """Box dilation as one-axis max filters; long ones as chains of short ones (faster)."""
        for axis, size in enumerate(kernel):
            for piece in _pieces(size):
                axis_kernel = [1, 1, 1]
                axis_kernel[axis] = piece
                x = self.dilate(x, (axis_kernel[0], axis_kernel[1], axis_kernel[2]))
        return x

    def erode_separable(self, x: str, kernel: tuple[int, int, int]) -> str:
        """Box erosion as three one-axis min filters."""
        return self.op("Neg", [self.dilate_separable(self.op("Neg", [x]), kernel)])

    def band(self, x: str, low: float, high: float) -> str:
        """1.0 where low <= x < high, else 0.0."""
        inside = self.op(
            "And",
            [
                self.op("GreaterOrEqual", [x, self.const(low)]),
                self.op("Less", [x, self.const(high)]),
            ],
        )
        return self.op("Cast", [inside], to=TensorProto.FLOAT)

    def output(self, x: str, name: str) -> None:
        self.nodes.append(helper.make_node("Identity", [x], [name]))

    def model(
        self,
        name: str,
        inputs: list[str],
        outputs: Mapping[str, int],
        input_type: int = TensorProto.FLOAT,
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(i, input_type, VOLUME_SHAPE) for i in inputs],
            [helper.make_tensor_value_info(o, t, VOLUME_SHAPE) for o, t in outputs.items()],
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pulmogate"
        )
        model.ir_version = 8
        return model


def build_bands_graph(bands: Bands | None = None) -> onnx.ModelProto:
    """hu (1,1,z,y,x) -> air, dark air, body, ground-glass and consolidation masks.

    Smoothing is a 3x3 in-plane mean; the lesion bands are opened with a 3x3 in-plane box
    so one-voxel rims (partial volume at the pleura and around vessels) drop out.
    """
    bands = bands or Bands()
    g = _Graph()
    smooth = g.op(
        "AveragePool", ["hu"], kernel_shape=[1, 3, 3], pads=[0, 1, 1, 0, 1, 1], count_include_pad=0
    )
    g.output(g.op("Less", [smooth, g.const(bands.air_below)]), "air")
    g.output(g.op("Less", [smooth, g.const(bands.dark_air_below)]), "dark")
    g.output(g.op("Greater", ["hu", g.const(bands.body_above)]), "body")
    for name, (low, high) in (("ggo", bands.ground_glass), ("consolidation", bands.consolidation)):
        opened = g.dilate(g.erode(g.band(smooth, low, high), (1, 3, 3)), (1, 3, 3))
        g.output(g.op("Greater", [opened, g.const(0.5)]), name)
    outputs = {k: TensorProto.BOOL for k in ("air", "dark", "body", "ggo", "consolidation")}
    return g.model("qct_bands", ["hu"], outputs)


def build_lung_growth_graph(
    kernel: tuple[int, int, int], steps: int, step_kernel: tuple[int, int, int] = (3, 5, 5)
) -> onnx.ModelProto:
    """Grow lung masks into lesion-like tissue: a conditional closing, then geodesic dilation.

    Inputs: mask (1,c,z,y,x) and allowed (1,1,z,y,x), both 0/1 float. Closing with the
    (z, y, x) box fills bays in the aerated lung; each of ``steps`` geodesic steps (a
    ``step_kernel`` dilation kept inside ``allowed``) reaches one slice and a few pixels into
    consolidated lung connected to it. Voxels outside ``allowed`` are only ever the input's.
    (float32 on purpose: onnxruntime's uint8 MaxPool measured 4x and float16 1.4x slower.)
    """
    g = _Graph()
    closed = g.erode_separable(g.dilate_separable("mask", kernel), kernel)
    grown = g.op("Max", ["mask", g.op("Min", [closed, "allowed"])])
    for _ in range(steps):
        reach = g.op("Min", [g.dilate_separable(grown, step_kernel), "allowed"])
        grown = g.op("Max", [grown, reach])
    g.output(g.op("Greater", [grown, g.const(0.5)]), "grown")
    return g.model("qct_lung_growth", ["mask", "allowed"], {"grown": TensorProto.BOOL})


def build_near_outside_graph(size: int) -> onnx.ModelProto:
    """body (1,1,z,y,x) 0/1 float -> voxels within size // 2 pixels (in-plane) of outside."""
    g = _Graph()
    outside = g.op("Sub", [g.const(1.0), "body"])
    near = g.dilate_separable(outside, (1, size, size))
    g.output(g.op("Greater", [near, g.const(0.5)]), "near")
    return g.model("qct_near_outside", ["body"], {"near": TensorProto.BOOL})
