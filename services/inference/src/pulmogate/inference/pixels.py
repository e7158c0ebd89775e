"""Decode the pixel data of one CT slice to HU: stored values, padding read as air, rescale."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pulmogate.common.refusals import Refusal, RefusalCode
from pulmogate.inference import header as attr
from pulmogate.inference.header import checked, label, meta_text

AIR_HU = -1000
# No tissue and no air reads below this: lower values are padding outside the
# reconstruction circle (-2048, -3024 and the like), read as air.
PADDING_BELOW_HU = -1500.0


def _transfer_syntax(ds: pydicom.Dataset) -> UID:
    """The slice's transfer syntax: from its file meta, else from how it was encoded."""
    declared = meta_text(ds, "TransferSyntaxUID")
    if declared:
        return UID(declared)
    implicit, little = getattr(ds, "original_encoding", (False, True))
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian


def _check_pixel_format(ds: pydicom.Dataset) -> tuple[int, int]:
    """(BitsAllocated, BitsStored) of a greyscale slice, or UNSUPPORTED_PIXEL_DATA."""
    samples = checked(attr.integer, ds, "SamplesPerPixel") or 1
    photometric = checked(attr.text, ds, "PhotometricInterpretation") or "MONOCHROME2"
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise Refusal(
            RefusalCode.UNSUPPORTED_PIXEL_DATA,
            f"slice {label(ds)} is a colour image ({samples} samples per pixel, "
            f"{photometric}); CT slices are greyscale",
        )
    allocated = checked(attr.integer, ds, "BitsAllocated")
    stored = checked(attr.integer, ds, "BitsStored") or allocated
    if allocated not in (8, 16, 32) or stored is None or not 1 <= stored <= allocated:
        raise Refusal(
            RefusalCode.UNSUPPORTED_PIXEL_DATA,
            f"slice {label(ds)} has {allocated} bits allocated and {stored} stored per "
            "pixel; CT pixel data has 8, 16 or 32 bits allocated",
        )
    return allocated, stored


def _decode(ds: pydicom.Dataset) -> np.ndarray:
    """The stored values of one slice, unused high bits left as they are (padding lives there)."""
    syntax = _transfer_syntax(ds)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as error:
        raise Refusal(
            RefusalCode.UNSUPPORTED_PIXEL_DATA,
            f"slice {label(ds)} uses transfer syntax {syntax}, which this gateway cannot "
            "decode; send the series uncompressed or JPEG Lossless",
        ) from error
    if not decoder.is_available:
        raise Refusal(
            RefusalCode.UNSUPPORTED_PIXEL_DATA,
            f"no decoder for {syntax.name} ({syntax}) is installed on this gateway; install "
            "the pylibjpeg plugins or send the series uncompressed",
        )
    try:
        # pydicom annotates each option as its whole options dict: the option is a bool.
        array, _ = decoder.as_array(ds, correct_unused_bits=False)  # type: ignore[arg-type]
    except Exception as error:  # any decoder failure: damaged pixel data
        raise Refusal(
            RefusalCode.UNSUPPORTED_PIXEL_DATA,
            f"the pixel data of slice {label(ds)} cannot be decoded as {syntax.name} "
            f"({syntax}): it is damaged or shorter than its Rows, Columns and bits say; "
            "send the series again",
        ) from error
    return array


def _padding(ds: pydicom.Dataset, stored: np.ndarray) -> np.ndarray | None:
    """Where the stored values are PixelPaddingValue (to PixelPaddingRangeLimit), or None."""
    value = checked(attr.integer, ds, "PixelPaddingValue")
    if value is None:
        return None
    limit = checked(attr.integer, ds, "PixelPaddingRangeLimit")
    bits = stored.dtype.itemsize * 8
    unsigned = np.dtype(f"u{stored.dtype.itemsize}")

    def as_stored(v: int) -> int:  # a US value read for signed pixels, or the other way round
        return int(np.array(v & ((1 << bits) - 1), unsigned).view(stored.dtype))

    low = as_stored(value)
    if limit is None:
        return np.asarray(stored == low)
    high = as_stored(limit)
    low, high = min(low, high), max(low, high)
    return np.asarray((stored >= low) & (stored <= high))


def _used_bits(stored: np.ndarray, bits_stored: int) -> np.ndarray:
    """The stored values with the bits above BitsStored cleared (unsigned) or sign-extended."""
    shift = stored.dtype.itemsize * 8 - bits_stored
    if shift <= 0:
        return stored
    if not stored.flags.writeable:
        stored = stored.copy()
    np.left_shift(stored, shift, out=stored)
    np.right_shift(stored, shift, out=stored)
    return stored


def hu_plane(ds: pydicom.Dataset) -> np.ndarray:
    """Decode one slice to HU (float32): rescale applied, padding read as air."""
    _, bits_stored = _check_pixel_format(ds)
    stored = _decode(ds)
    padding = _padding(ds, stored)
    stored = _used_bits(stored, bits_stored)
    slope = checked(attr.number, ds, "RescaleSlope")
    intercept = checked(attr.number, ds, "RescaleIntercept")
    slope = 1.0 if slope in (None, 0.0) else slope
    hu = stored.astype(np.float32) * np.float32(slope) + np.float32(intercept or 0.0)
    if padding is not None and padding.shape == hu.shape:
        hu[padding] = AIR_HU
    hu[hu < PADDING_BELOW_HU] = AIR_HU
    return hu
