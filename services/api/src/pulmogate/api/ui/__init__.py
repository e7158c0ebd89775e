"""The server-rendered web UI (Jinja2 templates, plain forms, one small upload script)."""

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Add the UI pages and static files to ``app``."""
    from pulmogate.api.ui.pages import ROUTERS
    from pulmogate.api.ui.pages.kit import SignInFirst, sign_in_redirect, static_files

    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", static_files(), name="static")
    app.add_exception_handler(SignInFirst, sign_in_redirect)
