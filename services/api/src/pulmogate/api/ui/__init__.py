"""The server-rendered web UI (Jinja2 templates, plain forms, a little JavaScript)."""

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Add the UI routes and static files to ``app``."""
    from pulmogate.api.ui.pages import router, static_files

    app.include_router(router)
    app.mount("/static", static_files(), name="static")
