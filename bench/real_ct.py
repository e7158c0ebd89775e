"""The analysis engine on real chest CT: figures per study, slice-level agreement, pictures.

Run: python bench/real_ct.py [FOLDER ...] [--out DIR] [--model qct] [--slice-area MM2]

Every study folder under ../shared/data/real_ct/ (one series of DICOM files each) and any
folder given on the command line is loaded as the service loads it (load_volume) and
analysed (analyse). Per study it prints the status (done, or the refusal code), the grade,
the percent of each lung and of both, the lung volumes and the time. Where a
slice_labels.csv beside the study folders (or --labels) has rows for the study (columns
study, file, slice_location_mm, infection), it also prints the slice-level sensitivity and
specificity against those labels: a slice is positive when it holds at least
``slice_positive_mm2`` of lesion (the model card's [grading] table, or --slice-area).
Slices outside the lungs count as negative findings.

For each study a contact sheet is written to --out (default bench-out/real_ct/):
<study>.png with eight slices from apex to base (lesions as the overlay series marks them,
the lung outline in thin green for the reviewer, the slice's label in the corner) and the
summary page the gateway sends. Look at them before believing a number.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pulmogate.common.refusals import Refusal
from pulmogate.inference.analysis import Analysis, analyse, default_segmenter
from pulmogate.inference.outputs.overlay import render_overlay_slice
from pulmogate.inference.outputs.render import boundary
from pulmogate.inference.outputs.summary import render_summary
from pulmogate.inference.segment import load_card
from pulmogate.inference.volume import Volume, load_volume

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_ct"
SHEET_SLICES = 8
TILE = 384  # pixels of one contact sheet tile


@dataclass
class Agreement:
    """Slice-level counts against the radiologists' labels."""

    tp: int = 0
    fn: int = 0
    tn: int = 0
    fp: int = 0

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else float("nan")


def read_labels(path: Path) -> dict[str, dict[float, int]]:
    """study -> {slice location (0.1 mm) -> infection 0/1}."""
    labels: dict[str, dict[float, int]] = {}
    if not path.is_file():
        return labels
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            location = round(float(row["slice_location_mm"]), 1)
            labels.setdefault(row["study"], {})[location] = int(row["infection"])
    return labels


def slice_labels(volume: Volume, by_location: dict[float, int]) -> np.ndarray:
    """Label per volume slice (-1 where the csv has none), matched by position along z."""
    return np.array([by_location.get(round(float(p[2]), 1), -1) for p in volume.positions])


def agreement(positive: np.ndarray, labels: np.ndarray) -> Agreement:
    """Counts over the labelled slices."""
    known = labels >= 0
    truth, found = labels[known] == 1, positive[known]
    return Agreement(
        tp=int(np.sum(found & truth)),
        fn=int(np.sum(~found & truth)),
        tn=int(np.sum(~found & ~truth)),
        fp=int(np.sum(found & ~truth)),
    )


def lesion_areas_mm2(volume: Volume, analysis: Analysis) -> np.ndarray:
    """Lesion area of each slice in mm²."""
    flat = analysis.lesions.reshape(analysis.lesions.shape[0], -1)
    return np.count_nonzero(flat, axis=1) * volume.spacing[1] * volume.spacing[2]


def contact_sheet(
    volume: Volume, analysis: Analysis, labels: np.ndarray, areas: np.ndarray, out: Path
) -> None:
    """Eight overlay slices from apex to base and the summary page, as one PNG."""
    with_lung = np.flatnonzero(analysis.lungs.reshape(analysis.lungs.shape[0], -1).any(axis=1))
    picks = (
        np.linspace(with_lung[-1], with_lung[0], SHEET_SLICES).round().astype(int)
        if with_lung.size
        else np.linspace(volume.hu.shape[0] - 1, 0, SHEET_SLICES).round().astype(int)
    )
    tiles = []
    for z in picks:
        rgb = render_overlay_slice(volume, analysis, int(z))
        rgb[boundary(analysis.lungs[z] > 0)] = (0, 200, 0)
        tile = Image.fromarray(rgb).resize((TILE, TILE))
        draw = ImageDraw.Draw(tile)
        label = {1: "infection", 0: "no infection", -1: "unlabelled"}[int(labels[z])]
        draw.text(
            (6, 6),
            f"slice {z} z={volume.positions[z][2]:.1f} mm  {areas[z]:.0f} mm2  [{label}]",
            fill=(255, 255, 255),
        )
        tiles.append(tile)
    summary = Image.fromarray(render_summary(volume, analysis))
    summary.thumbnail((TILE * 2, TILE * 2))
    columns = 4
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * TILE + summary.width, max(rows * TILE, summary.height)))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * TILE, (i // columns) * TILE))
    sheet.paste(summary, (columns * TILE, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)


def run_study(
    folder: Path, labels: dict[float, int] | None, args: argparse.Namespace, area_mm2: float
) -> Agreement | None:
    """Analyse one study folder and print its line; the agreement where it is labelled."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    started = time.perf_counter()
    try:
        volume = load_volume(files)
        loaded = time.perf_counter()
        analysis = analyse(volume, default_segmenter(args.model, args.provider))
    except Refusal as refusal:
        print(f"{folder.name:<20} refused {refusal.code}: {refusal}")
        return None
    seconds = time.perf_counter() - loaded
    right, left, total = analysis.right, analysis.left, analysis.total
    print(
        f"{folder.name:<20} done  CT-{analysis.grade}  right {right.percent:5.2f} %  "
        f"left {left.percent:5.2f} %  total {total.percent:5.2f} %  "
        f"lungs {total.lung_ml / 1000:.2f} L (right {right.lung_ml / 1000:.2f}, "
        f"left {left.lung_ml / 1000:.2f})  GGO {total.ggo_ml:.0f} ml, consolidation "
        f"{total.consolidation_ml:.0f} ml  load {loaded - started:.1f} s, "
        f"analysis {seconds:.1f} s"
    )
    print(f"{'':<20} prediction: {analysis.prediction()}")
    areas = lesion_areas_mm2(volume, analysis)
    per_slice = slice_labels(volume, labels or {})
    result = None
    if labels:
        result = agreement(areas >= area_mm2, per_slice)
        print(
            f"{'':<20} slices (>= {area_mm2:g} mm2 positive): sensitivity "
            f"{result.sensitivity:.2f} ({result.tp}/{result.tp + result.fn}), specificity "
            f"{result.specificity:.2f} ({result.tn}/{result.tn + result.fp})"
        )
    else:
        print(
            f"{'':<20} slices with >= {area_mm2:g} mm2 of lesion: "
            f"{int(np.sum(areas >= area_mm2))} of {len(areas)} (no labels)"
        )
    sheet = args.out / f"{folder.name}.png"
    contact_sheet(volume, analysis, per_slice, areas, sheet)
    print(f"{'':<20} contact sheet: {sheet}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "folders", nargs="*", type=Path, help="more study folders (one series each)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-out/real_ct"))
    parser.add_argument("--model", default="qct", help="model card name or path")
    parser.add_argument("--provider", default="auto", help="auto, cpu, cuda or tensorrt")
    parser.add_argument("--labels", type=Path, default=SHARED / "slice_labels.csv")
    parser.add_argument("--slice-area", type=float, help="mm2 of lesion that make a slice positive")
    parser.add_argument("--no-shared", action="store_true", help="skip ../shared/data/real_ct")
    args = parser.parse_args()
    card = load_card(args.model)
    area = args.slice_area or float(card.raw.get("grading", {}).get("slice_positive_mm2", 100.0))
    labels = read_labels(args.labels)
    folders = (
        []
        if args.no_shared or not SHARED.is_dir()
        else sorted(p for p in SHARED.iterdir() if p.is_dir())
    )
    folders += args.folders
    if not folders:
        print("no study folders (../shared/data/real_ct is missing; give folders)", file=sys.stderr)
        return 2
    print(f"model {card.name} {card.version}; a slice is positive from {area:g} mm2 of lesion")
    for folder in folders:
        run_study(folder, labels.get(folder.name), args, area)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
