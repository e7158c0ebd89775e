"""Accuracy of the analysis engine on phantom studies with exact ground truth (CT-0..CT-4).

Run: python bench/accuracy.py [--model qct] [--studies 36] [--markdown]

Each study is a seeded chest phantom (pulmogate.tools.phantom) with a known lesion share,
pattern (peripheral or diffuse), pixel size, slice thickness and noise; the anatomy is
scaled to a 358 mm field of view. The engine analyses the HU volume (the DICOM round trip
is tested elsewhere) and is compared with the phantom's masks. Prints per-study rows and
the summary against the targets: lung Dice >= 0.97, lesion Dice >= 0.85, median
|percent error| <= 2 points, grade agreement >= 95 %.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np

from pulmogate.inference.analysis import analyse, default_segmenter, grade_for
from pulmogate.inference.volume import Volume
from pulmogate.tools.phantom import Phantom, make_phantom

FIELD_OF_VIEW_MM = 358.0
SCAN_LENGTH_MM = 150.0
# Involvement (lesion share of both lungs) per study; each value runs once per pattern.
# Values near the 25/50/75 % boundaries are included on purpose: they are where grades flip.
INVOLVEMENTS = (
    0.0, 0.0, 0.005, 0.03, 0.08, 0.15, 0.21, 0.28, 0.35,
    0.42, 0.47, 0.55, 0.62, 0.68, 0.72, 0.8, 0.86, 0.9,
)  # fmt: skip
GEOMETRIES = ((256, 2.5), (320, 2.0), (384, 1.25))  # (pixels across, slice thickness mm)
NOISE_HU = (10.0, 15.0, 25.0)
TARGETS = {"lung_dice": 0.97, "lesion_dice": 0.85, "median_error": 2.0, "grade_agreement": 95.0}


@dataclass
class Study:
    """One phantom's parameters and the engine's scores on it."""

    index: int
    involvement: float
    pattern: str
    size: int
    thickness: float
    noise: float
    lung_dice: float = 0.0
    side_dice: float = 0.0
    lesion_dice: float | None = None
    true_percent: float = 0.0
    found_percent: float = 0.0
    true_grade: int = 0
    found_grade: int = 0
    seconds: float = 0.0

    @property
    def error(self) -> float:
        """Measured minus true involvement, in percentage points."""
        return self.found_percent - self.true_percent


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient (1.0 when both masks are empty)."""
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 2.0 * np.count_nonzero(a & b) / total if total else 1.0


def studies(count: int, pixels: int | None = None, step: int = 1) -> list[Study]:
    """The study plan: involvements x patterns, geometry and noise cycling through.

    ``pixels`` replaces every study's matrix size (e.g. 512: 0.70 mm pixels); ``step`` keeps
    every step-th study of the plan (a quicker subset that still spans CT-0..CT-4)."""
    plan = []
    for i in range(0, count, step):
        involvement = INVOLVEMENTS[(i // 2) % len(INVOLVEMENTS)]
        size, thickness = GEOMETRIES[i % len(GEOMETRIES)]
        size = pixels or size
        plan.append(
            Study(
                index=i,
                involvement=involvement,
                pattern=("peripheral", "diffuse")[i % 2],
                size=size,
                thickness=thickness,
                noise=NOISE_HU[(i // 3) % len(NOISE_HU)],
            )
        )
    return plan


def truth_grade(phantom: Phantom) -> int:
    """Grade of the exact masks, from the worse lung."""
    grades = []
    for side in (1, 2):
        lung = phantom.lungs == side
        grades.append(grade_for(100.0 * np.count_nonzero(phantom.lesions[lung]) / lung.sum()))
    return max(grades)


def run(study: Study, model: str) -> Study:
    """Generate the study's phantom, analyse it, score the result."""
    phantom = make_phantom(
        slices=round(SCAN_LENGTH_MM / study.thickness),
        size=study.size,
        slice_thickness_mm=study.thickness,
        pixel_spacing_mm=FIELD_OF_VIEW_MM / study.size,
        involvement=study.involvement,
        pattern=study.pattern,
        noise_hu=study.noise,
        seed=1000 + study.index,
    )
    nz = phantom.hu.shape[0]
    positions = np.array([[0.0, 0.0, k * phantom.spacing[0]] for k in range(nz)])
    volume = Volume(phantom.hu, phantom.spacing, positions, (1.0, 0, 0, 0, 1.0, 0), [])
    started = time.perf_counter()
    analysis = analyse(volume, default_segmenter(model))
    study.seconds = time.perf_counter() - started
    study.lung_dice = dice(analysis.lungs > 0, phantom.lungs > 0)
    study.side_dice = min(dice(analysis.lungs == s, phantom.lungs == s) for s in (1, 2))
    if phantom.lesions.any():
        study.lesion_dice = dice(analysis.lesions > 0, phantom.lesions > 0)
    study.true_percent = phantom.involvement_percent
    study.found_percent = analysis.total.percent
    study.true_grade = truth_grade(phantom)
    study.found_grade = analysis.grade
    return study


def summary(done: list[Study]) -> dict[str, float]:
    """The four target figures (and a few more) over all studies."""
    lesion = [s.lesion_dice for s in done if s.lesion_dice is not None]
    return {
        "lung_dice": statistics.mean(s.lung_dice for s in done),
        "lung_dice_min": min(s.lung_dice for s in done),
        "side_dice_min": min(s.side_dice for s in done),
        "lesion_dice": statistics.mean(lesion) if lesion else float("nan"),
        "lesion_dice_min": min(lesion) if lesion else float("nan"),
        "median_error": statistics.median(abs(s.error) for s in done),
        "max_error": max(abs(s.error) for s in done),
        "mean_error": statistics.mean(s.error for s in done),
        "grade_agreement": 100.0 * sum(s.true_grade == s.found_grade for s in done) / len(done),
        "seconds": statistics.mean(s.seconds for s in done),
    }


def print_rows(done: list[Study], markdown: bool) -> None:
    """Per-study results as a plain or Markdown table."""
    head = (
        "study", "involvement", "pattern", "matrix", "slice mm", "noise HU", "lung Dice",
        "worse side Dice", "lesion Dice", "true %", "found %", "error pts", "grade true/found",
    )  # fmt: skip
    rows = []
    for s in done:
        rows.append(
            (
                str(s.index),
                f"{100 * s.involvement:.1f} %",
                s.pattern,
                f"{s.size}",
                f"{s.thickness:g}",
                f"{s.noise:g}",
                f"{s.lung_dice:.3f}",
                f"{s.side_dice:.3f}",
                "-" if s.lesion_dice is None else f"{s.lesion_dice:.3f}",
                f"{s.true_percent:.1f}",
                f"{s.found_percent:.1f}",
                f"{s.error:+.1f}",
                f"CT-{s.true_grade} / CT-{s.found_grade}"
                + ("" if s.true_grade == s.found_grade else " ✗"),
            )
        )
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in rows:
            print("  ".join(f"{v:>9}" for v in row))


def main() -> None:
    """Run the plan, print rows and the summary against the targets."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="qct", help="model card name or path")
    parser.add_argument("--studies", type=int, default=36)
    parser.add_argument("--markdown", action="store_true", help="print the rows as a table")
    parser.add_argument("--pixels", type=int, help="matrix size for every study (e.g. 512)")
    parser.add_argument("--step", type=int, default=1, help="run every step-th study only")
    args = parser.parse_args()
    started = time.perf_counter()
    done = []
    for study in studies(args.studies, args.pixels, args.step):
        done.append(run(study, args.model))
        if not args.markdown:
            s = done[-1]
            print(
                f"{s.index:3d} {100 * s.involvement:5.1f}% {s.pattern:10s} {s.size}px "
                f"{s.thickness:g}mm: lung {s.lung_dice:.3f} lesion "
                f"{s.lesion_dice if s.lesion_dice is not None else float('nan'):.3f} "
                f"err {s.error:+.1f} CT-{s.true_grade}/CT-{s.found_grade} {s.seconds:.1f}s",
                flush=True,
            )
    if args.markdown:
        print_rows(done, markdown=True)
    figures = summary(done)
    print()
    print(f"studies                 {len(done)} ({time.perf_counter() - started:.0f} s in all)")
    grades = sorted({s.true_grade for s in done})
    print(f"true grades covered     {', '.join(f'CT-{g}' for g in grades)}")
    print(
        f"lung Dice               mean {figures['lung_dice']:.4f}, min {figures['lung_dice_min']:.4f}"
        f" (worse side min {figures['side_dice_min']:.4f}); target >= {TARGETS['lung_dice']}"
    )
    print(
        f"lesion Dice             mean {figures['lesion_dice']:.4f}, min "
        f"{figures['lesion_dice_min']:.4f}; target >= {TARGETS['lesion_dice']}"
    )
    print(
        f"|percent error|         median {figures['median_error']:.2f}, max "
        f"{figures['max_error']:.2f} points (mean signed {figures['mean_error']:+.2f}); "
        f"target median <= {TARGETS['median_error']}"
    )
    print(
        f"grade agreement         {figures['grade_agreement']:.1f} %; target >= "
        f"{TARGETS['grade_agreement']} %"
    )
    print(f"analysis time           {figures['seconds']:.2f} s per study (mean)")


if __name__ == "__main__":
    main()
