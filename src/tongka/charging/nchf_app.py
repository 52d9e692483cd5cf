"""The network's listener: Nchf_ConvergedCharging v3 and nothing else, apart from the public app.

A packet core (SMF) speaks HTTP/2 only (TS 29.500): h2c with prior knowledge, or TLS with ALPN
`h2`, and mutual TLS where the operator configures a client CA (TS 33.501). `tongka serve` runs
this app on `TONGKA_NCHF_BIND` under granian beside the public app; `tongka nchf serve` runs it
alone (`tongka.serving`). It is the hot path: no sessions, templates, pages or
middleware a machine's JSON request does not need; the NRF access token's check
(`nf_auth.NfAuthMiddleware`, before the body is read), the body limit (`http_limits`, the Nchf
limit, refused as a 3GPP ProblemDetails) and the last catch for a crash (`asgi.CatchCrashes`)
are all that wrap the routes. The browser's security headers (`asgi.SecurityHeaders`) are
left out: no browser reads this listener, and nothing it answers is HTML.

Its lifespan starts the charging worker that decides the requests (`worker.ChargingWorker`: a
process of its own beside each server process, or a thread: the tests) and stops it with the
server. Every answer, refusals included, is a 3GPP ProblemDetails: an op the worker could not
answer is a 500 SYSTEM_FAILURE, or for contention (`db.busy`) a 503 NF_CONGESTION with Retry-After.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tongka import __version__, config, logs
from tongka.asgi import CatchCrashes
from tongka.charging import api as charging_api
from tongka.charging import nf_auth, worker
from tongka.charging.renew_link import RenewLinks, link_key
from tongka.config import Settings, get_settings
from tongka.http_limits import BodyLimit

PROBLEM = "application/problem+json"
RETRY_AFTER_SECONDS = 1  # a busy database: the SMF may try again (or another CHF) soon


def create_nchf_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    config.check(settings)  # unsafe production settings: refused before anything starts
    logs.configure(settings.log_json)

    # Where the requests are decided (`worker.py`): a process of its own (the server's process then
    # holds no database connection at all), or a thread (the tests).
    charging = worker.ChargingWorker(
        settings.charging_worker,
        settings.database_url,
        RenewLinks(
            settings.public_base_url,
            link_key(settings.secret_key.get_secret_value()),
            settings.renew_link_ttl_seconds,
        ),
        log_json=settings.log_json,
        busy_timeout=settings.db_busy_timeout_seconds,
        echo=settings.sql_echo,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await charging.start()  # ready before the network's first request
        try:
            yield
        finally:
            await charging.stop()  # what it holds is answered first (time-boxed)

    app = FastAPI(
        lifespan=lifespan,
        title="tongka Nchf_ConvergedCharging",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # the document is 3GPP's (TS 32.291); `app.openapi()` for tests
    )
    app.state.settings = settings
    app.state.charging = charging
    app.state.nf_auth = auth = nf_auth.NfAuth(
        settings
    )  # refuses at start-up: no keys to verify tokens with

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Anyone who reaches the listener, no token needed (a liveness probe): the process is up."""
        return {"status": "ok"}

    if auth.plays_nrf:  # dev without an NRF: tongka hands out the tokens it accepts
        app.add_route(
            nf_auth.TOKEN_PATH, nf_auth.token_endpoint, methods=["POST"], include_in_schema=False
        )
    app.include_router(charging_api.router)
    _error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_nchf_body_bytes, network=True)
    app.add_middleware(
        nf_auth.NfAuthMiddleware, auth=auth
    )  # before the body is read: a 401 reads nothing
    app.add_middleware(
        CatchCrashes, answer=_crash_answer
    )  # outermost: a crash in the body limit too
    return app


def problem(
    status: int,
    title: str,
    cause: str | None = None,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A ProblemDetails (TS 29.571) with its TS 29.500 cause, where the table has one."""
    body: dict[str, Any] = {"title": title, "status": status}
    if detail:
        body["detail"] = detail
    if cause:
        body["cause"] = cause
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:  # TS 29.500 table 5.2.7.2-1
            return problem(
                404,
                "Not Found",
                "RESOURCE_URI_STRUCTURE_NOT_FOUND",
                "No such resource on this CHF.",
            )
        return problem(
            error.status_code, str(error.detail), headers=getattr(error, "headers", None)
        )

    @app.exception_handler(worker.ChargingBusy)
    async def charging_busy(request: Request, error: worker.ChargingBusy) -> JSONResponse:
        """Contention past the busy timeout (`db.busy`, in the worker): a 503 the SMF may retry."""
        logs.later("warning", "database_busy", path=request.url.path, error=str(error))
        return problem(
            503,
            "Service Unavailable",
            "NF_CONGESTION",
            "The charging database is busy; try again.",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(worker.ChargingFailed)
    async def charging_failed(request: Request, error: worker.ChargingFailed) -> JSONResponse:
        """An op the worker could not answer (it logged why, or it died twice): nothing charged twice,
        the SMF's retransmission gets the answer kept, if there is one."""
        logs.later("error", "charging_failed", path=request.url.path, error=str(error))
        return problem(500, "Internal Server Error", "SYSTEM_FAILURE")


def _crash_answer(_request: Request, _error: Exception) -> JSONResponse:
    """The 500 for an error nothing handled (CatchCrashes has logged it). Nothing was charged twice:
    the SMF's retransmission (same sequence number) gets the answer kept, if there is one."""
    return problem(500, "Internal Server Error", "SYSTEM_FAILURE")
