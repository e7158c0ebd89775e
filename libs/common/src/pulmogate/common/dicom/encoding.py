"""How result objects are encoded: pictures in each destination's image encoding (JPEG
Baseline, JPEG-LS, RLE or uncompressed), the SEG deflated, and transcoding between them.

The pictures are the Secondary Capture results (overlay slices, summary page); only they
take an image encoding. JPEG Baseline is lossy and says so (Lossy Image Compression "01",
its ratio and method); the other encodings keep every pixel. Transcoding never changes the
SOP Instance UID: the pixels a lossless syntax carries are the ones decoded, and a picture
once lossy stays marked lossy (PS3.3 C.7.6.1.1.5).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from enum import StrEnum
from io import BytesIO

import numpy as np
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)


class ImageEncoding(StrEnum):
    """A destination's preferred encoding of result pictures."""

    JPEG = "jpeg"
    JPEG_LS = "jpeg-ls"
    RLE = "rle"
    UNCOMPRESSED = "uncompressed"


DEFAULT_IMAGE_ENCODING = ImageEncoding.JPEG
# The first of a job's encodings in this order is the stored primary file of a picture
# (what C-MOVE, C-GET and downloads serve): the smallest first.
ENCODING_ORDER = (
    ImageEncoding.JPEG,
    ImageEncoding.JPEG_LS,
    ImageEncoding.RLE,
    ImageEncoding.UNCOMPRESSED,
)
# libjpeg-turbo (Pillow) quality 90, chroma subsampled 4:2:2 (YBR_FULL_422): the coloured
# text and lesion outlines stay legible (docs/performance.md); about 60 KB per 512 x 512
# overlay slice.
JPEG_QUALITY = 90
JPEG_METHOD = "ISO_10918_1"
SUBSAMPLING = "4:2:2"
PHOTOMETRIC = "YBR_FULL_422"

SYNTAX: dict[ImageEncoding, UID] = {
    ImageEncoding.JPEG: JPEGBaseline8Bit,
    ImageEncoding.JPEG_LS: JPEGLSLossless,
    ImageEncoding.RLE: RLELossless,
    ImageEncoding.UNCOMPRESSED: ExplicitVRLittleEndian,
}
PLUGIN = {JPEGLSLossless: "pyjpegls", RLELossless: "pylibjpeg"}
UNCOMPRESSED_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


class EncodingError(ValueError):
    """A dataset that cannot be put in the encoding asked for."""


def ordered(encodings: Iterable[str]) -> list[ImageEncoding]:
    """The distinct encodings in ``ENCODING_ORDER``; the default alone when there are none."""
    wanted = {ImageEncoding(e) for e in encodings}
    return [e for e in ENCODING_ORDER if e in wanted] or [DEFAULT_IMAGE_ENCODING]


def syntax_of(ds: Dataset) -> UID:
    """The transfer syntax a dataset is (to be) written in."""
    meta = getattr(ds, "file_meta", None)
    return UID(str(meta.TransferSyntaxUID)) if meta and "TransferSyntaxUID" in meta else UID("")


def encoding_of(syntax: str) -> ImageEncoding | None:
    """The image encoding a transfer syntax stands for (None for any other syntax)."""
    uid = UID(syntax)
    if uid in UNCOMPRESSED_SYNTAXES:
        return ImageEncoding.UNCOMPRESSED
    return next((e for e, s in SYNTAX.items() if s == uid), None)


def is_picture(ds: Dataset) -> bool:
    """True for an 8-bit Secondary Capture image: a result that takes an image encoding."""
    return (
        str(ds.get("SOPClassUID", "")) == SecondaryCaptureImageStorage
        and ds.get("BitsAllocated") == 8
        and ds.get("SamplesPerPixel") in (1, 3)
    )


def is_segmentation(ds: Dataset) -> bool:
    """True for a DICOM SEG (stored and offered deflated: binary frames shrink 50-fold)."""
    return str(ds.get("SOPClassUID", "")) == SegmentationStorage


def offered_syntaxes(ds: Dataset, encoding: ImageEncoding) -> list[UID]:
    """The transfer syntaxes to propose for ``ds`` to a destination preferring ``encoding``,
    best first: the preferred one, then uncompressed (a SEG: deflated unless the destination
    asked for uncompressed; anything else: as stored, then uncompressed)."""
    stored = syntax_of(ds)
    if is_picture(ds):
        first = [SYNTAX[encoding]]
    elif encoding is ImageEncoding.UNCOMPRESSED:
        first = [stored] if stored in UNCOMPRESSED_SYNTAXES else []
    elif is_segmentation(ds):
        first = [DeflatedExplicitVRLittleEndian]
    else:
        first = [stored] if stored else []
    return list(dict.fromkeys([*first, *UNCOMPRESSED_SYNTAXES]))


def _mark_lossy(ds: Dataset, ratio: float, method: str) -> None:
    """Record one more lossy compression: its ratio and method, after any earlier ones."""
    ratios: list[str] = []
    methods: list[str] = []
    if ds.get("LossyImageCompression") == "01":
        ratios = [str(v) for v in _values(ds.get("LossyImageCompressionRatio"))]
        methods = [str(v) for v in _values(ds.get("LossyImageCompressionMethod"))]
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = [*ratios, f"{ratio:.2f}"]
    ds.LossyImageCompressionMethod = [*methods, method]


def _values(value: object) -> list[object]:
    """The values of a possibly multi-valued element (none for a missing or empty one)."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple, MultiValue)):
        return list(value)
    return [value]


def _pixels(ds: Dataset) -> np.ndarray:
    """The native 8-bit pixels of a one-frame picture, (rows, columns[, 3])."""
    shape = (int(ds.Rows), int(ds.Columns))
    if int(ds.SamplesPerPixel) == 3:
        if int(ds.get("PlanarConfiguration", 0)) == 1:
            planes = np.frombuffer(ds.PixelData, np.uint8).reshape(3, *shape)
            return np.ascontiguousarray(planes.transpose(1, 2, 0))
        return np.frombuffer(ds.PixelData, np.uint8).reshape(*shape, 3)
    return np.frombuffer(ds.PixelData, np.uint8).reshape(shape)


def _encode_jpeg(ds: Dataset) -> None:
    """Replace native pixels by a JPEG Baseline frame (YBR_FULL for colour), in place."""
    from PIL import Image

    pixels = _pixels(ds)
    buffer = BytesIO()
    Image.fromarray(pixels).save(
        buffer, "JPEG", quality=JPEG_QUALITY, subsampling=SUBSAMPLING, optimize=True
    )
    frame = buffer.getvalue()
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if pixels.ndim == 3:
        ds.PhotometricInterpretation = PHOTOMETRIC
        ds.PlanarConfiguration = 0
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    _mark_lossy(ds, pixels.nbytes / len(frame), JPEG_METHOD)


def decoded(ds: Dataset) -> Dataset:
    """``ds`` with native pixels in Explicit VR Little Endian (a copy when it was compressed;
    colour comes back RGB); the SOP Instance UID and any lossy marks stay."""
    syntax = syntax_of(ds)
    if not syntax.is_compressed:
        if syntax == DeflatedExplicitVRLittleEndian or not syntax:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        return ds
    out = copy.deepcopy(ds)
    out.decompress(as_rgb=True, generate_instance_uid=False)
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return out


def encoded(ds: Dataset, encoding: ImageEncoding) -> Dataset:
    """A copy of the picture ``ds`` in ``encoding`` (``ds`` itself is left as it was)."""
    if not is_picture(ds):
        raise EncodingError("only 8-bit Secondary Capture pictures take an image encoding")
    native = decoded(ds)
    out = copy.deepcopy(native) if native is ds else native
    syntax = SYNTAX[encoding]
    if encoding is ImageEncoding.UNCOMPRESSED:
        out.file_meta.TransferSyntaxUID = syntax
    elif encoding is ImageEncoding.JPEG:
        _encode_jpeg(out)
    else:
        if int(out.SamplesPerPixel) == 3:
            out.PlanarConfiguration = 0
        out.compress(syntax, encoding_plugin=PLUGIN[syntax], generate_instance_uid=False)
    return out


def deflated(ds: Dataset) -> Dataset:
    """``ds`` to be written in Deflated Explicit VR Little Endian (lossless), in place."""
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return ds


def stored_forms(ds: Dataset, encodings: list[ImageEncoding]) -> list[tuple[str, Dataset]]:
    """The files a freshly built result is stored as, the primary first: a picture once per
    encoding in ``encodings`` (ordered), a SEG deflated, anything else as built."""
    if is_picture(ds):
        return [(e.value, encoded(ds, e)) for e in ordered(encodings)]
    if is_segmentation(ds):
        return [("deflated", deflated(ds))]
    return [("as-built", ds)]
