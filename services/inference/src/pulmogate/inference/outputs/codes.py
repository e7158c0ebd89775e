"""The coded concepts of the SR and the SEG: standard SNOMED CT, DCM and UCUM codes where
they exist, private 99PULMOGATE codes only where none was found (docs/conformance.md).

Every code value is at most 16 characters, so it fits CodeValue (SH): highdicom's readers
(``group.referenced_segment`` among them) expect CodeValue, not LongCodeValue.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.sr.codedict import codes

from pulmogate.inference.outputs.attributes import LOCAL_SCHEME

LUNG = hd.sr.CodedConcept("39607008", "SCT", "Lung")
RIGHT_LUNG = hd.sr.CodedConcept("3341006", "SCT", "Right lung")
LEFT_LUNG = hd.sr.CodedConcept("44029006", "SCT", "Left lung")
GROUND_GLASS_OPACITY = hd.sr.CodedConcept("112120", "DCM", "Ground glass opacity")
CONSOLIDATION = hd.sr.CodedConcept("95436008", "SCT", "Lung consolidation")
VOLUME = hd.sr.CodedConcept("118565006", "SCT", "Volume")
SEVERITY = hd.sr.CodedConcept("246112005", "SCT", "Severity")
MILLILITRE = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
PERCENT = hd.sr.CodedConcept("%", "UCUM", "Percent")
IMPRESSION = hd.sr.CodedConcept("121073", "DCM", "Impression")
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
LANGUAGES = {
    "en": hd.sr.CodedConcept("en-US", "RFC5646", "English (United States)"),
    "ru": hd.sr.CodedConcept("ru-RU", "RFC5646", "Russian (Russian Federation)"),
}
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure
ABNORMAL_STRUCTURE = codes.SCT.MorphologicallyAbnormalStructure

# No standard concept was found for these: private codes, declared in the SR.
INVOLVEMENT = hd.sr.CodedConcept("PG-INVOLVEMENT", LOCAL_SCHEME, "Lesion percent of lung volume")


def ct_grade(grade: int) -> hd.sr.CodedConcept:
    """The CT-0 … CT-4 grade of the Russian CT scale (private: no standard code exists)."""
    return hd.sr.CodedConcept(f"CT-{grade}", LOCAL_SCHEME, f"CT-{grade}")
