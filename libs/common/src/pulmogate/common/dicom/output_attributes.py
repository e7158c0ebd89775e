"""The query attributes of a result object, as its ``output_objects`` row records them.

Inference records them when it writes the object (it holds the dataset then); C-FIND and
C-MOVE answer from the row without opening the file.
"""

from dataclasses import asdict, dataclass

from pydicom import Dataset

TAGS = ("Modality", "SeriesNumber", "SeriesDescription", "InstanceNumber")


@dataclass(frozen=True)
class OutputAttributes:
    """What a query returns of a result object (the columns of its row)."""

    modality: str
    series_number: int | None
    series_description: str
    instance_number: int | None

    def columns(self) -> dict[str, str | int | None]:
        """The ``OutputObject`` column values."""
        return asdict(self)


def _int(value: object) -> int | None:
    try:
        return None if value in (None, "") else int(str(value))
    except ValueError:
        return None


def output_attributes(ds: Dataset) -> OutputAttributes:
    """The query attributes of a result dataset, cut to the columns' sizes."""
    return OutputAttributes(
        modality=str(ds.get("Modality", "") or "")[:16] or "OT",
        series_number=_int(ds.get("SeriesNumber")),
        series_description=str(ds.get("SeriesDescription", "") or "")[:64],
        instance_number=_int(ds.get("InstanceNumber")),
    )
