"""Jinja2 templates shared by every HTML page."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

from tongka.money import format_bytes

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters["bytes"] = format_bytes
