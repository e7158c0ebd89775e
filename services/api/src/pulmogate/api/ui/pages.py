"""UI pages."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).parent
router = APIRouter(include_in_schema=False)


def static_files() -> StaticFiles:
    """CSS and JavaScript of the UI."""
    return StaticFiles(directory=HERE / "static")
