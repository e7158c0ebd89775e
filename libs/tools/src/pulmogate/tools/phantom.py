"""Synthetic chest CT phantoms with exact lung and lesion masks, for tests, demos and benches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
)
from scipy import ndimage

from pulmogate.common.uids import derive_uid

AIR_HU = -1000.0
FAT_HU = -100.0
SOFT_TISSUE_HU = 40.0
BONE_HU = 700.0
LUNG_HU = -850.0
GGO_HU = -600.0
CONSOLIDATION_HU = -250.0
PATTERNS = ("peripheral", "diffuse")


@dataclass
class Phantom:
    """A chest CT volume in HU with its ground-truth lung (1 right, 2 left) and lesion masks."""

    hu: np.ndarray
    spacing: tuple[float, float, float]
    lungs: np.ndarray
    lesions: np.ndarray

    @property
    def involvement_percent(self) -> float:
        """Lesion volume as a percentage of total lung volume."""
        lung = int(np.count_nonzero(self.lungs))
        return 100.0 * np.count_nonzero(self.lesions) / lung if lung else 0.0


def _smooth_field(
    rng: np.random.Generator, shape: tuple[int, int, int], cells: tuple[int, int, int]
) -> np.ndarray:
    """A standardised low-frequency random field of ``shape`` (float32), from a coarse grid."""
    coarse = rng.standard_normal(cells).astype(np.float32)
    coarse = ndimage.gaussian_filter(coarse, 0.8, mode="wrap")
    zoom = [s / c for s, c in zip(shape, cells, strict=True)]
    field = ndimage.zoom(coarse, zoom, order=1, mode="nearest", grid_mode=True)
    field = field[: shape[0], : shape[1], : shape[2]]
    field -= field.mean()
    field /= field.std() + 1e-6
    return field


def _ellipse(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ay: float, ax: float
) -> np.ndarray:
    """Normalised elliptic radius (1 on the boundary) over the in-plane grid."""
    return np.sqrt(((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2)


def make_phantom(
    *,
    slices: int = 120,
    size: int = 256,
    slice_thickness_mm: float = 1.25,
    pixel_spacing_mm: float = 0.7,
    involvement: float = 0.3,
    pattern: str = "peripheral",
    consolidation_share: float = 0.3,
    noise_hu: float = 15.0,
    seed: int = 0,
) -> Phantom:
    """Build a deterministic chest phantom: body, ribs, spine, heart, airways, lungs, lesions.

    Array axes are (z, y, x): z index 0 is the most inferior slice, y index 0 anterior,
    x index 0 the patient's right (LPS, axial, IOP 1,0,0,0,1,0). Anatomy scales with
    ``size`` (the field of view in pixels) and ``slices``; ``involvement`` (0-0.9) is the
    exact lesion fraction of the lung volume, ``consolidation_share`` the part of it that
    is consolidation.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, not {pattern!r}")
    if not 0.0 <= involvement <= 0.95:
        raise ValueError("involvement must be between 0 and 0.95")
    rng = np.random.default_rng(seed)
    nz, n = slices, size
    shape = (nz, n, n)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    zz = np.arange(nz, dtype=np.float32)
    cy, cx = n * 0.5, n * 0.5

    body = _ellipse(yy, xx, cy, cx, 0.32 * n, 0.44 * n) <= 1
    muscle = _ellipse(yy, xx, cy, cx, 0.295 * n, 0.405 * n) <= 1
    ribcage_r = _ellipse(yy, xx, cy, cx, 0.27 * n, 0.385 * n)
    rib_ring = (ribcage_r > 0.94) & (ribcage_r <= 1.0)
    theta = np.arctan2(yy - cy, xx - cx)
    rib_angle = np.cos(14 * theta) > -0.2
    spine = _ellipse(yy, xx, cy + 0.23 * n, cx, 0.055 * n, 0.05 * n) <= 1
    z_mm = zz * slice_thickness_mm
    rib_z = np.sin(2 * np.pi * z_mm / 24.0) > -0.1

    plane = np.full((n, n), AIR_HU, np.float32)
    plane[body] = FAT_HU
    plane[muscle] = SOFT_TISSUE_HU
    hu = np.broadcast_to(plane, shape).copy()
    ribs = rib_ring & rib_angle
    hu[rib_z[:, None, None] & ribs[None]] = BONE_HU
    hu[:, spine] = BONE_HU + 200.0

    # Lungs: two ellipsoids inside the cavity, apex and base inside the scan, heart cut out.
    zc, zr = 0.5 * nz, 0.45 * nz
    dz = ((zz - zc) / zr)[:, None, None]
    lung_radius = np.zeros(shape, np.float32)
    lungs = np.zeros(shape, np.uint8)
    inner_cavity = ribcage_r <= 0.9
    for label, side in ((1, -1.0), (2, 1.0)):
        rr = _ellipse(yy, xx, cy + 0.01 * n, cx + side * 0.175 * n, 0.22 * n, 0.15 * n)
        r3 = np.sqrt(dz**2 + rr[None] ** 2)
        inside = (r3 <= 1) & inner_cavity[None]
        lungs[inside] = label
        lung_radius[inside] = r3[inside]
    heart = _ellipse(yy, xx, cy - 0.06 * n, cx + 0.06 * n, 0.12 * n, 0.13 * n) <= 1
    heart_z = zz < 0.55 * nz
    lungs[heart_z[:, None, None] & heart[None]] = 0

    # Airways: trachea from the top of the scan to the carina, main bronchi to each hilum.
    airway = np.zeros(shape, bool)
    carina = int(0.72 * nz)
    bronchus_end = int(0.6 * nz)
    ty = cy + 0.1 * n
    for k in range(nz):
        if k >= carina:
            airway[k] |= _ellipse(yy, xx, ty, cx, 0.035 * n, 0.035 * n) <= 1
        elif k >= bronchus_end:
            t = (carina - k) / max(carina - bronchus_end, 1)
            for side in (-1.0, 1.0):
                bx = cx + side * (0.02 + 0.09 * t) * n
                airway[k] |= _ellipse(yy, xx, ty - 0.03 * n * t, bx, 0.022 * n, 0.022 * n) <= 1
    lungs[airway] = 0

    lung_any = lungs > 0
    hu[lung_any] = LUNG_HU
    hu[airway] = AIR_HU

    # Vessels: tubes running mostly along z, with drift, clipped to the lungs.
    vessels = np.zeros(shape, bool)
    lz, ly, lx = np.nonzero(lung_any[:, :: max(n // 64, 1), :: max(n // 64, 1)])
    step = max(n // 64, 1)
    for _ in range(60 if len(lz) else 0):
        i = rng.integers(len(lz))
        z0, y0, x0 = lz[i], ly[i] * step, lx[i] * step
        length = int(rng.integers(max(nz // 6, 2), max(nz // 2, 3)))
        drift = rng.normal(0, 0.25, 2) * (slice_thickness_mm / pixel_spacing_mm)
        radius = float(rng.uniform(0.006, 0.011) * n)
        r = int(np.ceil(radius)) + 1
        ky, kx = np.mgrid[-r : r + 1, -r : r + 1]
        disk = ky**2 + kx**2 <= radius**2
        for dk in range(length):
            k = z0 + dk - length // 2
            if not 0 <= k < nz:
                continue
            y = round(y0 + drift[0] * (dk - length // 2))
            x = round(x0 + drift[1] * (dk - length // 2))
            if r <= y < n - r and r <= x < n - r:
                vessels[k, y - r : y + r + 1, x - r : x + r + 1] |= disk
    vessels &= lung_any
    hu[vessels] = SOFT_TISSUE_HU

    # Lesions: a smooth random field thresholded at the quantile that gives the exact involvement.
    lesions = np.zeros(shape, np.uint8)
    candidates = lung_any & ~vessels
    if involvement > 0 and candidates.any():
        cells = (max(nz // 12, 3), max(n // 20, 3), max(n // 20, 3))
        field = _smooth_field(rng, shape, cells)
        score = field + (2.0 * lung_radius if pattern == "peripheral" else 0.0)
        values = score[candidates]
        fraction = min(involvement * np.count_nonzero(lung_any) / values.size, 1.0)
        threshold = np.quantile(values, 1.0 - fraction)
        lesion = candidates & (score >= threshold)
        lesions[lesion] = 1
        if consolidation_share > 0:
            core_values = field[lesion]
            core_threshold = np.quantile(core_values, 1.0 - consolidation_share)
            lesions[lesion & (field >= core_threshold)] = 2
        hu[lesions == 1] = GGO_HU
        hu[lesions == 2] = CONSOLIDATION_HU

    noise = rng.standard_normal(shape, dtype=np.float32)
    sigma = np.where(lung_any & (lesions == 0) & ~vessels, noise_hu + 15.0, noise_hu)
    hu += noise * sigma.astype(np.float32)
    np.clip(hu, -1024, 3071, out=hu)
    return Phantom(
        hu=np.rint(hu).astype(np.int16),
        spacing=(float(slice_thickness_mm), float(pixel_spacing_mm), float(pixel_spacing_mm)),
        lungs=lungs,
        lesions=lesions,
    )


def write_series(
    phantom: Phantom,
    out_dir: Path,
    *,
    patient_name: str = "PHANTOM^CHEST",
    patient_id: str = "PG-PHANTOM-0001",
    study_uid: str | None = None,
    series_uid: str | None = None,
    modality: str = "CT",
    series_description: str = "Chest CT phantom",
    study_description: str = "CT CHEST",
    transfer_syntax: str = ExplicitVRLittleEndian,
    seed: int = 0,
) -> list[Path]:
    """Write the phantom as a CT Image Storage series (one file per slice); return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or derive_uid("phantom-study", patient_id, seed)
    series_uid = series_uid or derive_uid("phantom-series", study_uid, seed)
    frame_uid = derive_uid("phantom-frame", series_uid)
    dz, dy, dx = phantom.spacing
    nz, ny, nx = phantom.hu.shape
    origin_x, origin_y = -dx * (nx - 1) / 2, -dy * (ny - 1) / 2
    stored = (phantom.hu.astype(np.int32) + 1024).clip(0, 65535).astype(np.uint16)
    paths = []
    for k in range(nz):
        sop_uid = UID(derive_uid("phantom-instance", series_uid, k))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyDate = "20260101"
        ds.StudyTime = "120000"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.StudyDescription = study_description
        ds.SeriesDescription = series_description
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.Modality = modality
        ds.Manufacturer = "PulmoGate phantom"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [f"{origin_x:.4f}", f"{origin_y:.4f}", f"{k * dz:.4f}"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = f"{k * dz:.4f}"
        ds.SliceThickness = f"{dz:.4g}"
        ds.PixelSpacing = [f"{dy:.4g}", f"{dx:.4g}"]
        ds.KVP = "120"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = ny, nx
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "-600"
        ds.WindowWidth = "1500"
        ds.PixelData = stored[k].tobytes()
        if transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax)
        path = out_dir / f"{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


__all__ = ["Phantom", "make_phantom", "write_series"]
