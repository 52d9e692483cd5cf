"""The FastAPI application: routers of each domain, problem-details errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tongka import __version__, config, logs
from tongka.account import api as account_api
from tongka.account import centre as account_centre
from tongka.account import pages as account_pages
from tongka.alerts import api as alerts_api
from tongka.asgi import CatchCrashes, SecurityHeaders
from tongka.autorenew import api as autorenew_api
from tongka.autorenew import pages as autorenew_pages
from tongka.catalog import api as catalog_api
from tongka.catalog import pages as catalog_pages
from tongka.charging import overage_api as charging_overage_api
from tongka.charging import usage_api as charging_usage_api
from tongka.config import Settings, get_settings
from tongka.console import audit_pages as console_audit
from tongka.console import catalog as console_catalog
from tongka.console import home as console_home
from tongka.console import inventory as console_inventory
from tongka.console import offers as console_offers
from tongka.console import operations as console_operations
from tongka.console import people as console_people
from tongka.console import reports as console_reports
from tongka.console import trust as console_trust
from tongka.counter import pages as counter_pages
from tongka.counter import till as counter_till
from tongka.db import AsyncReads, ThreadReads, busy, make_engine, make_sessionmaker
from tongka.deps import request_language
from tongka.errors import DatabaseBusy, TongkaError
from tongka.forecast import api as forecast_api
from tongka.gate import Gate
from tongka.http_limits import BodyLimit
from tongka.i18n import _, gettext
from tongka.notify import admin as notify_admin
from tongka.payment import providers
from tongka.promotion import admin as promotion_admin
from tongka.promotion import api as promotion_api
from tongka.receipt import api as receipt_api
from tongka.receipt import pages as receipt_pages
from tongka.renewal import admin as renewal_admin
from tongka.renewal import api as renewal_api
from tongka.renewal import bills as renewal_bills
from tongka.renewal import pages as renewal_pages
from tongka.staff import api as staff_api
from tongka.staff import pages as staff_pages
from tongka.stores import pages as stores_pages
from tongka.trust import api as trust_api
from tongka.trust import pages as trust_pages
from tongka.trust import service as trust_service
from tongka.wallet import pages as wallet_pages
from tongka.web import error_page, wants_page

PROBLEM = "application/problem+json"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    config.check(settings)  # unsafe production settings: refused before anything starts
    logs.configure(settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        # The charging notifications and the scheduled jobs are the background runner's
        # (background.py: `tongka worker`, or `tongka serve` itself), not each app's.
        if app.state.engine.dialect.name == "postgresql":  # the balance read's connections
            reads = AsyncReads(
                app.state.engine, settings.db_pool_size, settings.db_busy_timeout_seconds
            )
            await reads.open()
            app.state.reads = reads
        try:
            yield
        finally:
            if app.state.reads is not None:
                await app.state.reads.close()
                app.state.reads = None
        if settings.sandbox_enabled:  # the simulated providers finish sending what they owe
            from tongka import sandbox

            await sandbox.drain()

    app = FastAPI(
        lifespan=lifespan,
        title="tongka",
        version=__version__,
        description="Prepaid cross-border SIM and eSIM data between mainland China and Hong Kong. "
        "Money is in integer minor units; data in integer bytes (1 GB = 1024³ bytes).",
        # The docs page is tongka's own (_api_docs: no script from another host); no /redoc.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    engine = make_engine(
        settings.database_url,
        echo=settings.sql_echo,
        busy_timeout=settings.db_busy_timeout_seconds,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_overflow,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.reads = None  # AsyncReads while the lifespan runs, on PostgreSQL
    app.state.gate = Gate(
        settings.db_pool_size, engine.dialect.name == "sqlite", settings.db_busy_timeout_seconds
    )
    # Elsewhere (SQLite, or no lifespan): the balance reads that wait, in one hop to a worker thread
    app.state.thread_reads = ThreadReads(
        app.state.sessionmaker, lambda: app.state.gate.enter(write=False)
    )
    app.state.providers = providers.build(settings)
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        larger={"/official/report": trust_service.SCREENSHOT_MAX_BYTES + settings.max_body_bytes},
    )
    # The network's Nchf API is not here: it has a listener of its own (charging/nchf_app.py).

    # Routes are matched in order: first those called most, the health check (load balancers), then
    # the app's balance read.
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Anyone: the process is up (touches nothing else)."""
        return {"status": "ok"}

    app.router.add_route(
        account_api.BALANCE_PATH, account_api.balance_lean, ["GET"], include_in_schema=False
    )
    for router in (
        account_api.reads,  # the balance read: the app's most frequent call
        account_api.router,
        catalog_api.router,
        renewal_api.router,
        renewal_api.callbacks,
        renewal_admin.router,
    ):
        app.include_router(router)
    app.include_router(receipt_api.router)
    app.include_router(promotion_api.router)
    app.include_router(promotion_admin.router)
    app.include_router(notify_admin.router)
    app.include_router(charging_usage_api.router)
    app.include_router(charging_overage_api.router)
    app.include_router(forecast_api.router)
    app.include_router(autorenew_api.router)
    app.include_router(alerts_api.router)
    app.include_router(renewal_pages.router)
    app.include_router(receipt_pages.router)
    app.include_router(account_pages.router)
    app.include_router(catalog_pages.router)
    app.include_router(stores_pages.router)
    app.include_router(account_centre.router)
    app.include_router(renewal_bills.router)
    app.include_router(wallet_pages.router)
    app.include_router(autorenew_pages.router)
    app.include_router(staff_api.router)
    app.include_router(staff_pages.router)
    app.include_router(console_home.router)
    app.include_router(console_catalog.router)
    app.include_router(console_offers.router)
    app.include_router(console_inventory.router)
    app.include_router(console_people.router)
    app.include_router(counter_pages.router)
    app.include_router(console_operations.router)
    app.include_router(console_audit.router)
    app.include_router(console_reports.router)
    app.include_router(counter_till.router)
    app.include_router(trust_pages.router)
    app.include_router(trust_api.router)
    app.include_router(console_trust.router)
    if settings.sandbox_enabled:  # dev only: the providers' side, played here
        from tongka import sandbox

        sandbox.mount(app, settings)
    if settings.dev:
        from tongka.notify import api as notify_api

        app.include_router(notify_api.router)
    if settings.docs_enabled:
        _api_docs(app)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    _error_handlers(app)
    # Outermost last: every answer gets the headers, the crash's 500 included.
    app.add_middleware(CatchCrashes, answer=_crash_answer)
    app.add_middleware(SecurityHeaders, hsts=not settings.dev)

    return app


class _HTTPError(TongkaError):
    """Starlette's own refusals (unknown path, wrong method) as problem details too."""

    def __init__(self, error: StarletteHTTPException) -> None:
        super().__init__(_("Not found.") if error.status_code == 404 else str(error.detail))
        self.status = error.status_code
        self.code = {404: "not_found", 405: "method_not_allowed"}.get(
            error.status_code, "http_error"
        )


def _problem(
    error: TongkaError, language: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        error.problem(language),
        status_code=error.status,
        media_type=PROBLEM,
        headers={"Content-Language": language, **(headers or {})},
    )


def _field(error: Any) -> str:
    """`line_id`, `query.channel`, or `body` for a body that is not JSON (whose loc is a character offset)."""
    if error["type"] == "json_invalid":
        return "body"
    return ".".join(str(p) for p in error["loc"] if p != "body") or "body"


def _error_handlers(app: FastAPI) -> None:
    # A person's browser gets each refusal as a page in their language (web.error_page); the API,
    # the providers and the network get problem details.
    @app.exception_handler(TongkaError)
    async def tongka_error(request: Request, error: TongkaError) -> Response:
        if wants_page(request):
            return error_page(request, error, request_language(request))
        return _problem(error, request_language(request), error.headers())

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, error: SQLAlchemyError) -> Response:
        """Contention past the busy timeout (`db.busy`) is a 503 the client may retry; anything else a crash."""
        if not busy(error):
            raise error
        logs.later("warning", "database_busy", path=request.url.path, error=type(error).__name__)
        refusal = DatabaseBusy()
        if wants_page(request):
            return error_page(request, refusal, request_language(request))
        return _problem(refusal, request_language(request), refusal.headers())

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        language = request_language(request)
        if wants_page(request):  # a page's own forms are read by web.parse; this is a bad path
            return error_page(request, _HTTPError(StarletteHTTPException(404)), language)
        errors = [
            {"field": _field(e), "message": e["msg"], "type": e["type"]} for e in error.errors()
        ]
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        body: dict[str, Any] = {
            "type": "urn:tongka:problem:validation_error",
            "title": gettext(_("Invalid request"), language),
            "status": 422,
            "detail": gettext(_("Check these fields: {fields}"), language, fields=fields),
            "code": "validation_error",
            "errors": errors,
        }
        return JSONResponse(
            body, status_code=422, media_type=PROBLEM, headers={"Content-Language": language}
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        language = request_language(request)
        if wants_page(request):
            return error_page(request, _HTTPError(error), language)
        return _problem(_HTTPError(error), language, getattr(error, "headers", None))


def _crash_answer(request: Request, _error: Exception) -> Response:
    """The 500 for an error nothing handled (asgi.CatchCrashes has logged it): never a trace."""
    language = request_language(request)
    if wants_page(request):
        return error_page(request, _Crash(), language)
    body = {
        "type": "urn:tongka:problem:internal_error",
        "title": gettext(_("Something went wrong"), language),
        "status": 500,
        "detail": gettext(
            _("Something went wrong on our side. Nothing was charged twice; try again."), language
        ),
        "code": "internal_error",
    }
    return JSONResponse(body, status_code=500, media_type=PROBLEM)


class _Crash(TongkaError):
    status = 500
    code = "internal_error"
    message = _("Something went wrong on our side. Nothing was charged twice; try again.")


SWAGGER_UI_FILES = ("swagger-ui.css", "swagger-ui-bundle.js")
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>tongka · API</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="/openapi.json"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/static/docs.js"></script>
</body>
</html>
"""


def _api_docs(app: FastAPI) -> None:
    """/docs: Swagger UI from files served here (those the fastapi-offline package ships), nothing from
    another host. Only its files are used: the page is ours, its script a file (no inline script)."""
    from importlib.resources import files

    from fastapi.responses import FileResponse

    swagger_ui_path = files("fastapi_offline") / "static"

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> HTMLResponse:
        """Anyone (where the docs are on): the API's interactive documentation."""
        return HTMLResponse(DOCS_PAGE)

    @app.get("/docs/{name}", include_in_schema=False)
    def docs_file(name: str) -> FileResponse:
        """Anyone (where the docs are on): Swagger UI's own files."""
        if name not in SWAGGER_UI_FILES:
            raise StarletteHTTPException(404)
        return FileResponse(Path(str(swagger_ui_path)) / name)
