"""A result object written to storage, and the row that records it."""

from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset

from pulmogate.common.db.models import OutputObject
from pulmogate.common.dicom.output_attributes import OutputAttributes, output_attributes


@dataclass(frozen=True)
class StoredObject:
    """An output object written to storage, with what queries answer of it."""

    kind: str
    sop_instance_uid: str
    sop_class_uid: str
    series_uid: str
    path: Path
    attributes: OutputAttributes

    @classmethod
    def of(cls, kind: str, ds: Dataset, path: Path) -> "StoredObject":
        """The record of ``ds`` written at ``path``."""
        return cls(
            kind,
            str(ds.SOPInstanceUID),
            str(ds.SOPClassUID),
            str(ds.SeriesInstanceUID),
            path,
            output_attributes(ds),
        )

    def row(self, job_id: int) -> OutputObject:
        """Its ``output_objects`` row, query attributes included (recorded at write time)."""
        return OutputObject(
            job_id=job_id,
            kind=self.kind,
            sop_instance_uid=self.sop_instance_uid,
            sop_class_uid=self.sop_class_uid,
            series_uid=self.series_uid,
            path=str(self.path),
            **self.attributes.columns(),
        )
