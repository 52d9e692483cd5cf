"""Structured logs: key=value lines in dev, JSON lines in production (`TONGKA_LOG_JSON=true`)."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(json: bool) -> None:
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        # stderr: a command's own output (a statement, a report) stays clean on stdout.
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
