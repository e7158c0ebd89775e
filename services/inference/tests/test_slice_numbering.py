"""Results are numbered as the source is, so the overlay series scrolls with the CT.

Two sources of the same phantom: numbered feet to head (InstanceNumber 1 at the bottom, as
the phantom writes it) and head to feet (1 at the top, as most scanners do). Each overlay
image carries its source slice's InstanceNumber, its burned-in label says "Slice N/M" with
that number, and the summary's most affected slices are labelled "#N" with it, listed in
the source's order.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from pulmogate.inference.outputs import build_outputs
from pulmogate.inference.outputs import overlay as overlay_module
from pulmogate.inference.outputs import summary as summary_module
from pulmogate.inference.outputs.numbering import slice_numbers
from pulmogate.inference.outputs.summary import key_slices
from pulmogate.inference.volume import Volume, load_volume
from pulmogate.tools.phantom import Phantom
from tests.fixtures import quirks

SLICES, SIZE = 20, 64


@pytest.fixture(scope="module")
def phantom_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Phantom, Path]:
    folder = tmp_path_factory.mktemp("numbering")
    return quirks.phantom_series(folder, slices=SLICES, size=SIZE), folder


def _source(phantom_folder: tuple[Phantom, Path], tmp: Path, head_first: bool) -> Volume:
    _, folder = phantom_folder
    datasets = quirks.read(folder)
    if head_first:
        quirks.reverse_instance_numbers(datasets)
    return load_volume(quirks.write(datasets, tmp / ("head-first" if head_first else "feet")))


def _spy_labels(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """Record the overlay's slice labels and every text the summary page draws."""
    overlay_labels: list[str] = []
    summary_texts: list[str] = []
    coloured_line = overlay_module.render.coloured_line

    def spy_line(parts, *args, **kwargs):
        overlay_labels.append(str(parts[0][0]))
        return coloured_line(parts, *args, **kwargs)

    draw_text = summary_module.ImageDraw.ImageDraw.text

    def spy_text(self, xy, text, *args, **kwargs):
        summary_texts.append(str(text))
        return draw_text(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(overlay_module.render, "coloured_line", spy_line)
    monkeypatch.setattr(summary_module.ImageDraw.ImageDraw, "text", spy_text)
    return overlay_labels, summary_texts


@pytest.mark.parametrize("head_first", [True, False], ids=["head-to-feet", "feet-to-head"])
def test_overlay_and_summary_use_the_source_instance_numbers(
    phantom_folder: tuple[Phantom, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    head_first: bool,
) -> None:
    phantom, _ = phantom_folder
    volume = _source(phantom_folder, tmp_path, head_first)
    source_number = {str(h.SOPInstanceUID): int(h.InstanceNumber) for h in volume.headers}
    # The volume runs feet to head whatever the numbering: z = 0 is the lowest slice.
    assert [int(h.InstanceNumber) for h in volume.headers] == (
        list(range(SLICES, 0, -1)) if head_first else list(range(1, SLICES + 1))
    )
    labels, texts = _spy_labels(monkeypatch)
    analysis = quirks.truth_analysis(phantom, volume)
    outputs = build_outputs(volume, analysis)
    overlays = [o.dataset for o in outputs if o.kind == "overlay"]
    assert overlays
    for ds in overlays:
        source = str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID)
        assert int(ds.InstanceNumber) == source_number[source]
    assert labels == [f"Slice {int(ds.InstanceNumber)}/{SLICES}" for ds in overlays]
    # Overlay N lies where CT image N lies: sorted by number, both run the same way.
    by_number = sorted(overlays, key=lambda ds: int(ds.InstanceNumber))
    positions = [float(ds.ImagePositionPatient[2]) for ds in by_number]
    assert positions == sorted(positions, reverse=head_first)
    expected = sorted(int(volume.headers[z].InstanceNumber) for z in key_slices(analysis))
    assert [t for t in texts if t.startswith("#")] == [f"#{n}" for n in expected]


def test_without_usable_instance_numbers_slices_are_numbered_along_the_volume(
    phantom_folder: tuple[Phantom, Path], tmp_path: Path
) -> None:
    """A missing or shared InstanceNumber: 1..M from the lowest slice, labelled N/M."""
    _, folder = phantom_folder
    datasets = quirks.read(folder)
    del datasets[3].InstanceNumber
    datasets[5].InstanceNumber = datasets[6].InstanceNumber
    numbers = slice_numbers(load_volume(quirks.write(datasets, tmp_path / "gaps")))
    assert not numbers.from_source
    assert [numbers.number(z) for z in range(SLICES)] == list(range(1, SLICES + 1))
    assert numbers.label(0) == f"1/{SLICES}"


def test_numbers_that_do_not_run_1_to_m_are_shown_alone(
    phantom_folder: tuple[Phantom, Path], tmp_path: Path
) -> None:
    """A series numbered from 101: the label is the number itself, which viewers show too."""
    _, folder = phantom_folder
    datasets = quirks.read(folder)
    for ds in datasets:
        ds.InstanceNumber = int(ds.InstanceNumber) + 100
    volume = load_volume(quirks.write(datasets, tmp_path / "from-101"))
    numbers = slice_numbers(volume)
    assert numbers.from_source
    assert numbers.number(0) == 101 and numbers.label(0) == "101"
    header: pydicom.Dataset = volume.headers[0]
    assert int(header.InstanceNumber) == 101
