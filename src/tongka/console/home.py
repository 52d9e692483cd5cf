"""The console's front page: where each part of the business is run."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tongka import web

router = APIRouter(include_in_schema=False)


@router.get("/console", response_class=HTMLResponse)
def console_home(request: Request, visitor: web.AdminDep) -> HTMLResponse:
    """Operator admins: the console's sections."""
    return web.page(request, visitor, "web/console/home.html")
