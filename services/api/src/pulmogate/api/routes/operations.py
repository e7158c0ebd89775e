"""The operations routers (rule tester, echo, job actions, uploads, status) and the web UI."""

from fastapi import APIRouter, FastAPI

from pulmogate.api.routes import destination_echo, job_actions, rule_tester, status, uploads


def api_routers() -> list[APIRouter]:
    """Routers mounted under /api/v1 (before the CRUD routers: /rules/test is not an id)."""
    return [
        rule_tester.router,
        destination_echo.router,
        job_actions.router,
        uploads.router,
        status.router,
    ]


def mount_ui(app: FastAPI) -> None:
    """The server-rendered web UI at / and its static files."""
    from pulmogate.api.ui import mount

    mount(app)
