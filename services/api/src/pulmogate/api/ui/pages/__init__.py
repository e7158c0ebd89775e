"""The web UI's pages, one module per area (server-rendered; every read and change goes through
the API)."""

from fastapi import APIRouter

from pulmogate.api.ui.pages import accounts, destinations, results, rules, session, status

ROUTERS: list[APIRouter] = [
    m.router for m in (session, results, rules, destinations, accounts, status)
]
