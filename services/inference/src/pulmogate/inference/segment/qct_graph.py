"""ONNX graphs of the qct model, built in code: HU classes, ellipsoid morphology, vesselness.

Every graph is dense, voxel-parallel work (pooling, shifts, element-wise arithmetic) so the
CUDA provider runs it on a GPU; connected components and hole filling stay on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 17
VOLUME_SHAPE: list[str | int | None] = [1, "channels", "z", "y", "x"]


@dataclass(frozen=True)
class Bands:
    """Hounsfield bands of the model card's [bands_hu] table (lower bound inclusive)."""

    air_below: float = -400.0  # aerated lung (and ground-glass): the lung finder's air
    dark_air_below: float = -950.0  # gas: airway lumen, bowel, outside air
    body_above: float = -500.0  # the patient (and the table, dropped by an opening)
    ground_glass: tuple[float, float] = (-750.0, -400.0)
    consolidation: tuple[float, float] = (-400.0, 100.0)

    @classmethod
    def from_card(cls, table: Mapping[str, Any]) -> Bands:
        """Bands from a card's [bands_hu] table; missing entries keep the defaults."""
        default = cls()
        ggo = table.get("ground_glass", default.ground_glass)
        consolidation = table.get("consolidation", default.consolidation)
        bands = cls(
            air_below=float(table.get("air_below", default.air_below)),
            dark_air_below=float(table.get("dark_air_below", default.dark_air_below)),
            body_above=float(table.get("body_above", default.body_above)),
            ground_glass=(float(ggo[0]), float(ggo[1])),
            consolidation=(float(consolidation[0]), float(consolidation[1])),
        )
        if not bands.dark_air_below < bands.ground_glass[0] < bands.ground_glass[1]:
            raise ValueError("bands_hu: dark_air_below < ground_glass low < high is required")
        if bands.ground_glass[1] != bands.consolidation[0] or not (
            bands.consolidation[0] < 0.0 < bands.consolidation[1]
        ):
            raise ValueError(
                "bands_hu: consolidation must start where ground_glass ends and span 0 HU"
            )
        return bands

    @property
    def class_edges(self) -> tuple[float, ...]:
        """Ascending HU edges of the voxel classes (see ``HuClass``)."""
        return (
            self.dark_air_below,
            self.ground_glass[0],
            self.ground_glass[1],
            0.0,
            self.consolidation[1],
        )

    @property
    def key(self) -> str:
        """A short text that tells sessions built from different bands apart."""
        values = (self.air_below, self.body_above, *self.class_edges)
        return ",".join(f"{v:g}" for v in values)


class HuClass:
    """Voxel classes of the smoothed HU (one uint8 per voxel): the count of edges passed."""

    GAS = 0  # below dark_air_below
    AERATED = 1  # up to the ground-glass band
    GROUND_GLASS = 2
    CONSOLIDATION = 3  # consolidation band below 0 HU: partly aerated, fat, effusion
    DENSE = 4  # 0 HU up to the top of the consolidation band: airless lung, soft tissue
    ABOVE = 5  # vessels with contrast, bone, metal


@dataclass(frozen=True)
class Ellipsoid:
    """A structuring element: per z offset (0..rz), the in-plane radius in pixels.

    The in-plane shape after n steps is an octagon (squares and crosses interleaved, about
    41 % squares: the Euclidean disk's diagonal); along z it is exact.
    """

    radii: tuple[int, ...]  # radii[dz] for dz = 0..rz, non-increasing

    @classmethod
    def for_mm(cls, radius_mm: float, spacing: Sequence[float]) -> Ellipsoid:
        """The voxel ellipsoid of a ball of ``radius_mm`` on a (z, y, x) ``spacing`` grid."""
        pixel = 0.5 * (float(spacing[1]) + float(spacing[2]))
        rz = math.floor(radius_mm / float(spacing[0]) + 1e-6)
        radii = []
        for dz in range(rz + 1):
            left = max(radius_mm**2 - (dz * float(spacing[0])) ** 2, 0.0)
            radii.append(round(math.sqrt(left) / pixel))
        return cls(tuple(radii))

    @classmethod
    def flat(cls, radius_px: int) -> Ellipsoid:
        """An in-plane octagon of ``radius_px`` (no reach in z)."""
        return cls((radius_px,))

    @property
    def rz(self) -> int:
        """Reach in slices."""
        return len(self.radii) - 1

    @property
    def key(self) -> str:
        return "-".join(str(r) for r in self.radii)


MAX_POOL_PIECE = 9  # a pool of size a+b-1 is one of a then one of b; short ones run faster


def _pieces(size: int) -> list[int]:
    """Odd pool sizes <= MAX_POOL_PIECE whose chain is one pool of ``size`` (none for 1)."""
    pieces = []
    while size > MAX_POOL_PIECE:
        pieces.append(MAX_POOL_PIECE)
        size -= MAX_POOL_PIECE - 1
    if size > 1:
        pieces.append(size if size % 2 else size + 1)
    return pieces


def octagon_steps(radius: int) -> list[bool]:
    """For each in-plane step of a radius-``radius`` octagon: True for a square, False for a
    cross, spread evenly (squares first where they round up)."""
    squares = round(radius * (math.sqrt(2.0) - 1.0))
    steps = []
    done = 0
    for i in range(1, radius + 1):
        target = round(i * squares / radius) if radius else 0
        steps.append(target > done)
        done = target
    return steps


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

    def ints(self, values: Sequence[int]) -> str:
        name = self.name("ints")
        self.initializers.append(
            helper.make_tensor(name, TensorProto.INT64, [len(values)], list(values))
        )
        return name

    def pool(self, x: str, kernel: Sequence[int], kind: str = "MaxPool") -> str:
        """Same-size max (or mean, outside ignored) filter with a (z, y, x) box kernel."""
        pads = [k // 2 for k in kernel] * 2
        extra: dict[str, Any] = {"count_include_pad": 0} if kind == "AveragePool" else {}
        return self.op(kind, [x], kernel_shape=list(kernel), pads=pads, strides=[1, 1, 1], **extra)

    def square(self, x: str) -> str:
        """One in-plane 3x3 dilation step (two one-axis passes)."""
        return self.pool(self.pool(x, (1, 1, 3)), (1, 3, 1))

    def cross(self, x: str) -> str:
        """One in-plane 4-neighbour dilation step."""
        return self.op("Max", [self.pool(x, (1, 1, 3)), self.pool(x, (1, 3, 1))])

    def shift_z(self, x: str, dz: int, fill: float) -> str:
        """``x`` moved by ``dz`` slices along z, ``fill`` where it moved in from outside."""
        if dz == 0:
            return x
        pads = [0, 0, max(dz, 0), 0, 0, 0, 0, max(-dz, 0), 0, 0]
        padded = self.op("Pad", [x, self.ints(pads), self.const(fill)], mode="constant")
        return self._slice_z(padded, 0 if dz > 0 else -dz, x)

    def _slice_z(self, padded: str, start: int, like: str) -> str:
        """Slices ``start`` .. ``start + len(like)`` of ``padded`` along z."""
        shape = self.op("Shape", [like])
        length = self.op("Slice", [shape, self.ints([2]), self.ints([3]), self.ints([0])])
        begin = self.ints([start])
        end = self.op("Add", [begin, length])
        return self.op("Slice", [padded, begin, end, self.ints([2])])

    def dilate(self, x: str, element: Ellipsoid) -> str:
        """Dilation by an ellipsoid, the union of nested cylinders (in-plane octagon of
        radius r, z half-height h): octagons of growing radius, the z reach between them
        applied as they are taken in (Horner's scheme: the z pools add up to rz once)."""
        cylinders = [
            (radius, dz)
            for dz, radius in enumerate(element.radii)
            if dz == element.rz or element.radii[dz + 1] < radius
        ]
        cylinders.sort()  # by radius, growing; the half-heights then shrink
        schedule = octagon_steps(max(element.radii))
        current, grown = x, 0
        acc: str | None = None
        previous_height = 0
        for radius, height in cylinders:
            while grown < radius:
                current = self.square(current) if schedule[grown] else self.cross(current)
                grown += 1
            if acc is None:
                acc = current
            else:
                acc = self.op("Max", [self.z_reach(acc, previous_height - height), current])
            previous_height = height
        assert acc is not None
        return self.z_reach(acc, previous_height)

    def z_reach(self, x: str, height: int) -> str:
        """Max over z offsets -height..height (chained short pools)."""
        for piece in _pieces(2 * height + 1):
            x = self.pool(x, (piece, 1, 1))
        return x

    def erode(self, x: str, element: Ellipsoid) -> str:
        """Erosion as 1 - dilation of 1 - x (outside the input never erodes)."""
        one = self.const(1.0)
        inverse = self.op("Sub", [one, x])
        return self.op("Sub", [one, self.dilate(inverse, element)])

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
        scalars: Sequence[str] = (),
    ) -> onnx.ModelProto:
        volume_inputs = [helper.make_tensor_value_info(i, input_type, VOLUME_SHAPE) for i in inputs]
        scalar_inputs = [helper.make_tensor_value_info(i, TensorProto.FLOAT, [1]) for i in scalars]
        graph = helper.make_graph(
            self.nodes,
            name,
            volume_inputs + scalar_inputs,
            [helper.make_tensor_value_info(o, t, VOLUME_SHAPE) for o, t in outputs.items()],
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pulmogate"
        )
        model.ir_version = 8
        return model


def build_bands_graph(bands: Bands | None = None, factor: int = 1) -> onnx.ModelProto:
    """hu (1, slices, 1, y, x) -> fine HU classes and working-grid means.

    Slices go in as channels, so every operation is in-plane (slabs of slices give the same
    result as the whole volume). ``classes`` (uint8, ``HuClass``) are from a 3x3 in-plane
    mean; ``mean`` and ``dense`` are that mean and the share of voxels above ``body_above``
    averaged over ``factor`` x ``factor`` pixel blocks: the working grid of the lung finder.
    """
    bands = bands or Bands()
    g = _Graph()
    smooth = g.pool("hu", (1, 3, 3), "AveragePool")
    classes: str | None = None
    for edge in bands.class_edges:
        passed = g.op(
            "Cast", [g.op("GreaterOrEqual", [smooth, g.const(edge)])], to=TensorProto.UINT8
        )
        classes = passed if classes is None else g.op("Add", [classes, passed])
    assert classes is not None
    g.output(classes, "classes")
    dense = g.op("Cast", [g.op("Greater", ["hu", g.const(bands.body_above)])], to=TensorProto.FLOAT)
    if factor > 1:
        pool = {
            "kernel_shape": [1, factor, factor],
            "strides": [1, factor, factor],
            "ceil_mode": 1,
            "count_include_pad": 0,
        }
        smooth = g.op("AveragePool", [smooth], **pool)
        dense = g.op("AveragePool", [dense], **pool)
    g.output(smooth, "mean")
    g.output(dense, "dense")
    outputs = {"classes": TensorProto.UINT8, "mean": TensorProto.FLOAT, "dense": TensorProto.FLOAT}
    return g.model("qct_bands", ["hu"], outputs)


def build_morphology_graph(steps: Sequence[tuple[str, Ellipsoid]]) -> onnx.ModelProto:
    """mask (1, 1, z, y, x) 0/1 float -> ``out``: the dilations and erosions in order
    (a closing is [("dilate", e), ("erode", e)]). Grey values work too (max/min filters)."""
    g = _Graph()
    x = "mask"
    for kind, element in steps:
        if kind == "dilate":
            x = g.dilate(x, element)
        elif kind == "erode":
            x = g.erode(x, element)
        else:
            raise ValueError(f"unknown morphology step {kind!r}")
    g.output(x, "out")
    return g.model("qct_morphology", ["mask"], {"out": TensorProto.FLOAT})


def build_geodesic_graph(element: Ellipsoid, steps: int) -> onnx.ModelProto:
    """mask and allowed (1, 1, z, y, x) 0/1 float -> ``out``: ``steps`` dilations by
    ``element``, each kept inside ``allowed`` (what the mask reaches through allowed voxels;
    voxels of the mask itself always stay)."""
    g = _Graph()
    x = "mask"
    for _ in range(steps):
        x = g.op("Max", [x, g.op("Min", [g.dilate(x, element), "allowed"])])
    g.output(x, "out")
    return g.model("qct_geodesic", ["mask", "allowed"], {"out": TensorProto.FLOAT})


@dataclass(frozen=True)
class FrangiParameters:
    """Frangi et al. (1998) vesselness constants for bright tubes on dark lung."""

    alpha: float = 0.5  # plate vs tube (Ra)
    beta: float = 0.5  # blob vs tube (Rb)
    c_hu: float = 150.0  # structure strength (HU of the scale-normalised Hessian norm)


NEWTON_STEPS = 6  # iterations for the largest eigenvalue's cosine (see build_vesselness_graph)
VESSELNESS_WEIGHTS = ("w_zz", "w_yy", "w_xx", "w_zy", "w_zx", "w_yx")


def vesselness_weights(spacing: Sequence[float], passes: Sequence[int]) -> dict[str, np.ndarray]:
    """The Hessian weights of a level (graph inputs, so one graph serves every spacing):
    sigma^2 / (spacing_a * spacing_b), over 4 for the mixed terms; sigma^2 (mm^2) is the mean
    over the axes of the blur's variance, 2/3 pixel^2 a 3-box pass."""
    sigma2 = sum(c * 2.0 / 3.0 * float(s) ** 2 for c, s in zip(passes, spacing, strict=True))
    scale = sigma2 / 3.0
    z, y, x = (float(s) for s in spacing)
    values = (
        scale / z**2, scale / y**2, scale / x**2,
        scale / (4 * z * y), scale / (4 * z * x), scale / (4 * y * x),
    )  # fmt: skip
    return {
        name: np.array([v], np.float32) for name, v in zip(VESSELNESS_WEIGHTS, values, strict=True)
    }


def build_vesselness_graph(
    passes: Sequence[int], frangi: FrangiParameters, downsample_z: bool
) -> onnx.ModelProto:
    """hu (1, 1, z, y, x) and the ``vesselness_weights`` -> ``vesselness`` at one scale and
    ``next``, the blurred volume averaged 2x in-plane (and in z when ``downsample_z``) for
    the next, coarser scale.

    The scale is set by ``passes`` 3-box blurs per axis; the Hessian is central differences
    of the blurred volume in mm, normalised by sigma^2 (the weights); its eigenvalues are
    the closed form for symmetric 3x3 matrices (Smith 1961).
    """
    g = _Graph()
    x = "hu"
    for axis, count in enumerate(passes):
        kernel = [1, 1, 1]
        kernel[axis] = 3
        for _ in range(count):
            x = g.pool(x, kernel, "AveragePool")

    def shifted(d: Sequence[int]) -> str:
        """x at offset d = (dz, dy, dx), edge values repeated."""
        pads_begin = [0, 0, *(max(-v, 0) for v in d)]
        pads_end = [0, 0, *(max(v, 0) for v in d)]
        padded = g.op("Pad", [x, g.ints(pads_begin + pads_end)], mode="edge")
        starts = [max(v, 0) for v in d]
        shape = g.op("Shape", [x])
        spatial = g.op("Slice", [shape, g.ints([2]), g.ints([5]), g.ints([0])])
        begin = g.ints(starts)
        end = g.op("Add", [begin, spatial])
        return g.op("Slice", [padded, begin, end, g.ints([2, 3, 4])])

    def unit(axis: int, sign: int) -> list[int]:
        d = [0, 0, 0]
        d[axis] = sign
        return d

    hessian: dict[tuple[int, int], str] = {}
    for axis in range(3):
        total = g.op("Add", [shifted(unit(axis, 1)), shifted(unit(axis, -1))])
        second = g.op("Sub", [total, g.op("Mul", [x, g.const(2.0)])])
        hessian[(axis, axis)] = g.op("Mul", [second, VESSELNESS_WEIGHTS[axis]])
    for (a, b), weight in zip(((0, 1), (0, 2), (1, 2)), VESSELNESS_WEIGHTS[3:], strict=True):
        corners = []
        for sa, sb in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            d = [0, 0, 0]
            d[a], d[b] = sa, sb
            corners.append(shifted(d))
        acc = g.op("Sub", [corners[0], corners[1]])
        acc = g.op("Sub", [acc, corners[2]])
        acc = g.op("Add", [acc, corners[3]])
        hessian[(a, b)] = g.op("Mul", [acc, weight])

    hzz, hyy, hxx = hessian[(0, 0)], hessian[(1, 1)], hessian[(2, 2)]
    hzy, hzx, hyx = hessian[(0, 1)], hessian[(0, 2)], hessian[(1, 2)]
    mul, add, sub = (
        (lambda p, q: g.op("Mul", [p, q])),
        (lambda p, q: g.op("Add", [p, q])),
        (lambda p, q: g.op("Sub", [p, q])),
    )
    q = g.op("Div", [add(add(hzz, hyy), hxx), g.const(3.0)])
    az, ay, ax = sub(hzz, q), sub(hyy, q), sub(hxx, q)
    p1 = add(add(mul(hzy, hzy), mul(hzx, hzx)), mul(hyx, hyx))
    p2 = add(add(add(mul(az, az), mul(ay, ay)), mul(ax, ax)), mul(p1, g.const(2.0)))
    p = add(g.op("Sqrt", [g.op("Div", [p2, g.const(6.0)])]), g.const(1e-6))
    # det(A - qI) by the first row; det(B) = det(A - qI) / p^3
    minor1 = sub(mul(ay, ax), mul(hyx, hyx))
    minor2 = sub(mul(hzy, ax), mul(hyx, hzx))
    minor3 = sub(mul(hzy, hyx), mul(ay, hzx))
    det = add(sub(mul(az, minor1), mul(hzy, minor2)), mul(hzx, minor3))
    r = g.op("Div", [det, mul(g.const(2.0), mul(p, mul(p, p)))])
    r = g.op("Clip", [r, g.const(-1.0), g.const(1.0)])
    # t = cos(acos(r) / 3), the root of 4t^3 - 3t = r in [1/2, 1], by Newton's method from 1
    # (no Acos: the CUDA provider has none). It converges fast for tubes (r near 1); near
    # r = -1 (plates, vesselness 0 anyway) slowly, which does not matter.
    t = g.const(1.0)
    for _ in range(NEWTON_STEPS):
        t2 = mul(t, t)
        f = sub(mul(t, sub(mul(t2, g.const(4.0)), g.const(3.0))), r)
        slope = g.op("Max", [sub(mul(t2, g.const(12.0)), g.const(3.0)), g.const(1e-3)])
        t = g.op("Clip", [sub(t, g.op("Div", [f, slope])), g.const(0.5), g.const(1.0)])
    root = g.op("Sqrt", [g.op("Max", [sub(g.const(1.0), mul(t, t)), g.const(0.0)])])
    e_max = add(q, mul(mul(p, g.const(2.0)), t))
    e_min = sub(q, mul(p, add(t, mul(root, g.const(math.sqrt(3.0))))))
    e_mid = sub(sub(mul(q, g.const(3.0)), e_max), e_min)
    # bright tube: e_min <= e_mid < 0 and |e_max| <= |e_mid|
    tiny = g.const(1e-6)
    ra = g.op("Div", [e_mid, g.op("Min", [e_min, g.op("Neg", [tiny])])])
    rb2 = g.op("Div", [mul(e_max, e_max), g.op("Max", [mul(e_min, e_mid), tiny])])
    s2 = add(add(mul(e_min, e_min), mul(e_mid, e_mid)), mul(e_max, e_max))

    def decay(value: str, width: float) -> str:
        return g.op("Exp", [mul(value, g.const(-1.0 / (2.0 * width * width)))])

    one = g.const(1.0)
    v = mul(sub(one, decay(mul(ra, ra), frangi.alpha)), decay(rb2, frangi.beta))
    v = mul(v, sub(one, decay(s2, frangi.c_hu)))
    tube = g.op(
        "And",
        [
            g.op("Less", [e_mid, g.const(0.0)]),
            g.op("LessOrEqual", [e_max, g.op("Neg", [e_mid])]),
        ],
    )
    v = mul(v, g.op("Cast", [tube], to=TensorProto.FLOAT))
    g.output(v, "vesselness")
    stride = [2 if downsample_z else 1, 2, 2]
    g.output(
        g.op(
            "AveragePool",
            [x],
            kernel_shape=stride,
            strides=stride,
            ceil_mode=1,
            count_include_pad=0,
        ),
        "next",
    )
    return g.model(
        "qct_vesselness",
        ["hu"],
        {"vesselness": TensorProto.FLOAT, "next": TensorProto.FLOAT},
        scalars=VESSELNESS_WEIGHTS,
    )
