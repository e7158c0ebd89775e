"""Texts burned into the images, in English and Russian."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "disclaimer": "Decision support, not a diagnosis",
        "ggo": "Ground-glass opacity",
        "consolidation": "Consolidation",
        "title": "PulmoGate: chest CT lung lesion analysis",
        "right": "Right lung",
        "left": "Left lung",
        "total": "Both lungs",
        "lung_ml": "Lung volume, ml",
        "ggo_ml": "Ground-glass, ml",
        "consolidation_ml": "Consolidation, ml",
        "percent": "Involvement, %",
        "grade": "CT grade",
        "grade_prefix": "CT-",
        "model": "Model",
        "slice": "Slice",
        "key_slices": "Most affected slices",
        "area": "cm²",
        "notice_title": "PulmoGate: analysis not performed",
        "notice_reason": "Reason",
        "notice_series": "Series",
        "notice_images": "images",
        "notice_footer": "No PulmoGate results will follow for this series. This is not a "
        "finding: read the CT as usual.",
    },
    "ru": {
        "disclaimer": "Поддержка принятия решений, не диагноз",
        "ggo": "Матовое стекло",
        "consolidation": "Консолидация",
        "title": "PulmoGate: анализ поражения лёгких по КТ",
        "right": "Правое лёгкое",
        "left": "Левое лёгкое",
        "total": "Оба лёгких",
        "lung_ml": "Объём лёгкого, мл",
        "ggo_ml": "Матовое стекло, мл",
        "consolidation_ml": "Консолидация, мл",
        "percent": "Поражение, %",
        "grade": "Степень по КТ",
        "grade_prefix": "КТ-",
        "model": "Модель",
        "slice": "Срез",
        "key_slices": "Наиболее поражённые срезы",
        "area": "см²",
        "notice_title": "PulmoGate: анализ не выполнен",
        "notice_reason": "Причина",
        "notice_series": "Серия",
        "notice_images": "изображений",
        "notice_footer": "Результатов PulmoGate для этой серии не будет. Это не находка: "
        "описывайте КТ как обычно.",
    },
}


def text(key: str, language: str) -> str:
    """The text for ``key`` in ``language`` (English when the language is unknown)."""
    return TEXTS.get(language, TEXTS["en"])[key]
