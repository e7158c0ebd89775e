"""Result picture encodings: what each syntax keeps, how lossy compression is recorded, and
what the sender proposes for each kind of result."""

from io import BytesIO
from typing import cast

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
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

from pulmogate.common.dicom.encoding import (
    SYNTAX,
    EncodingError,
    ImageEncoding,
    decoded,
    encoded,
    encoding_of,
    offered_syntaxes,
    ordered,
    stored_forms,
)
from pulmogate.common.storage import dataset_bytes


def picture(samples: int = 3, size: int = 64) -> Dataset:
    """A native 8-bit Secondary Capture picture: a gradient with a coloured square."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = UID("2.25.1234")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, "2.25.1234"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    grey = np.tile(np.linspace(0, 255, size, dtype=np.uint8), (size, 1))
    if samples == 3:
        rgb = np.stack([grey, grey, grey], axis=-1)
        rgb[16:32, 16:32] = (255, 220, 0)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.PixelData = rgb.tobytes()
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = grey.tobytes()
    return ds


def written(ds: Dataset) -> Dataset:
    """``ds`` written as a Part 10 file and read back."""
    return dcmread(BytesIO(dataset_bytes(ds)))


@pytest.mark.parametrize("samples", [1, 3])
@pytest.mark.parametrize("encoding", [ImageEncoding.JPEG_LS, ImageEncoding.RLE])
def test_lossless_encodings_keep_every_pixel_and_the_uid(
    encoding: ImageEncoding, samples: int
) -> None:
    source = picture(samples)

    back = written(encoded(source, encoding))

    assert back.file_meta.TransferSyntaxUID == SYNTAX[encoding]
    assert SYNTAX[encoding] in (JPEGLSLossless, RLELossless)
    assert np.array_equal(back.pixel_array, source.pixel_array)
    assert back.SOPInstanceUID == "2.25.1234" and "LossyImageCompression" not in back
    assert source.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # left as it was


def test_jpeg_is_marked_lossy_with_its_ratio_and_method_and_stays_close() -> None:
    source = picture()

    back = written(encoded(source, ImageEncoding.JPEG))

    assert back.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert back.PhotometricInterpretation == "YBR_FULL_422"
    assert back.LossyImageCompression == "01"
    assert back.LossyImageCompressionMethod == "ISO_10918_1"
    assert float(back.LossyImageCompressionRatio) > 1.0
    error = np.abs(back.pixel_array.astype(int) - source.pixel_array.astype(int))
    assert error.mean() < 3.0
    assert back.SOPInstanceUID == "2.25.1234"


def test_a_lossy_picture_stays_marked_lossy_and_a_second_jpeg_adds_its_ratio() -> None:
    once = written(encoded(picture(), ImageEncoding.JPEG))

    plain = written(decoded(once))
    lossless = written(encoded(once, ImageEncoding.JPEG_LS))
    twice = written(encoded(once, ImageEncoding.JPEG))

    assert plain.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert plain.PhotometricInterpretation == "RGB"
    assert np.array_equal(plain.pixel_array, once.pixel_array)
    assert lossless.LossyImageCompression == plain.LossyImageCompression == "01"
    assert list(twice.LossyImageCompressionMethod) == ["ISO_10918_1", "ISO_10918_1"]
    assert len(twice.LossyImageCompressionRatio) == 2


def test_only_pictures_take_an_image_encoding() -> None:
    seg = picture()
    seg.SOPClassUID = SegmentationStorage

    with pytest.raises(EncodingError, match="Secondary Capture"):
        encoded(seg, ImageEncoding.JPEG)


def test_the_sender_offers_the_preferred_syntax_then_uncompressed() -> None:
    seg = Dataset()
    seg.SOPClassUID = SegmentationStorage
    seg.file_meta = FileMetaDataset()
    seg.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    uncompressed = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

    assert offered_syntaxes(picture(), ImageEncoding.RLE) == [RLELossless, *uncompressed]
    assert offered_syntaxes(picture(), ImageEncoding.UNCOMPRESSED) == uncompressed
    assert offered_syntaxes(seg, ImageEncoding.JPEG) == [
        DeflatedExplicitVRLittleEndian,
        *uncompressed,
    ]
    assert offered_syntaxes(seg, ImageEncoding.UNCOMPRESSED) == uncompressed


def test_pictures_are_stored_once_per_encoding_the_smallest_first() -> None:
    rle = cast(ImageEncoding, "rle")  # the name, as a destination's row holds it
    forms = stored_forms(picture(), [ImageEncoding.UNCOMPRESSED, ImageEncoding.RLE, rle])

    assert [name for name, _ in forms] == ["rle", "uncompressed"]
    assert ordered([]) == [ImageEncoding.JPEG]
    assert encoding_of(str(ImplicitVRLittleEndian)) is ImageEncoding.UNCOMPRESSED
    assert encoding_of(str(DeflatedExplicitVRLittleEndian)) is None
