"""What every page of the web site shares: who is looking (the session cookie), in which language,
the CSRF check on every form, form errors in words a person reads, and rendering.

- **Session**: the cookie `tongka_session` holds an access token like the app's bearer token (only
  its SHA-256 is stored; log-out deletes it), HttpOnly, SameSite=Lax, Secure outside dev.
- **Language**: `?lang=` (remembered in the cookie `tongka_lang`), else that cookie, else the
  signed-in account's language, else Accept-Language.
- **CSRF**: every form carries `csrf_token`, an HMAC of the random cookie `tongka_csrf` under the
  secret key; a POST whose token does not match, or whose Origin is another site's, is refused
  (403, `csrf_failed`) before it does anything.
- **Pages**: `page()` renders a template of `templates/web/` with `_()` in the visitor's
  language, the CSRF token, and Babel's formats for money, data and dates.

Who may see a page is stated by the route: `VisitorDep` (anyone) or `SubscriberDep` (a signed-in
subscriber; anyone else is sent to /login and brought back).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from babel.numbers import format_decimal
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from tongka import spreadsheet
from tongka.account import service as accounts
from tongka.account.models import Account
from tongka.config import Settings
from tongka.db import transaction
from tongka.deps import staff_session
from tongka.errors import Forbidden, TongkaError, Unauthorized
from tongka.i18n import LANGUAGES, _, babel_locale, gettext, negotiate
from tongka.money import GB, KB, MB, Money, currency
from tongka.staff.service import Staff, StaffRoleRefused
from tongka.templating import templates

SESSION_COOKIE = "tongka_session"
STAFF_COOKIE = "tongka_staff"
LANG_COOKIE = "tongka_lang"
CSRF_COOKIE = "tongka_csrf"
CSRF_FIELD = "csrf_token"
LANG_COOKIE_SECONDS = 365 * 86_400
# Hong Kong and the mainland keep the same time (UTC+8): the site shows every time in it.
LOCAL_TIME = ZoneInfo("Asia/Hong_Kong")
LANGUAGE_NAMES = {"zh-Hans": "简体中文", "zh-Hant": "繁體中文", "en": "English"}


class CsrfFailed(Forbidden):
    code = "csrf_failed"
    message = _("This form has expired or came from another site. Reload the page and try again.")


class LoginRequired(Unauthorized):
    """A page for signed-in subscribers, opened by someone who is not: the app sends them to /login."""

    code = "login_required"


@dataclass(frozen=True)
class Visitor:
    """Who is looking at a page: a signed-in account or nobody, and the page's language."""

    language: str
    account_id: uuid.UUID | None = None
    username: str | None = None
    # A staff member (the staff cookie), on the counter's and console's pages; never a subscriber.
    staff: Staff | None = None

    @property
    def signed_in(self) -> bool:
        return self.account_id is not None


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _chosen_language(request: Request) -> str | None:
    """?lang= or the remembered cookie: a choice the visitor made, ahead of anything else."""
    for value in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if value in LANGUAGES:
            return value
    return None


async def _visitor(request: Request) -> Visitor:
    token = request.cookies.get(SESSION_COOKIE)
    account: tuple[uuid.UUID, str, str] | None = None
    if token:

        def read() -> tuple[uuid.UUID, str, str] | None:
            with transaction(request.app.state.sessionmaker, read_only=True) as session:
                try:
                    a = accounts.account_for_token(session, token)
                except Unauthorized:  # expired or logged out elsewhere: a visitor again
                    return None
                return a.id, a.username, a.language

        async with request.app.state.gate.enter(False):
            account = await run_in_threadpool(read)
    language = (
        _chosen_language(request)
        or (account[2] if account else None)
        or negotiate(request.headers.get("accept-language"))
    )
    request.state.language = language  # the error pages and refusals speak it too
    if account is None:
        return Visitor(language)
    return Visitor(language, account[0], account[1])


VisitorDep = Annotated[Visitor, Depends(_visitor)]


async def _subscriber(request: Request, visitor: VisitorDep) -> Visitor:
    if not visitor.signed_in:
        raise LoginRequired()
    return visitor


SubscriberDep = Annotated[Visitor, Depends(_subscriber)]


# --- staff pages: the counter and the console -------------------------------------------------


class StaffLoginRequired(LoginRequired):
    """A staff page opened without a staff session (or after it ended): to /staff/login."""

    code = "staff_login_required"


def language_of(request: Request) -> str:
    """A staff page's language: ?lang= or the remembered choice, else the browser's."""
    language = _chosen_language(request) or negotiate(request.headers.get("accept-language"))
    request.state.language = language
    return language


async def _staff_visitor(request: Request) -> Visitor:
    token = request.cookies.get(STAFF_COOKIE)
    language = language_of(request)
    if not token:
        raise StaffLoginRequired()
    try:
        member = await staff_session(request, token)
    except Unauthorized:  # ended, idle too long, or deactivated
        raise StaffLoginRequired() from None
    return Visitor(language, staff=member)


@dataclass(frozen=True)
class RoleGate:
    """A staff page's roles: anyone else on staff is refused (403). The roles are kept on the
    dependency so the tests' authorisation matrix reads them off each route."""

    roles: tuple[str, ...]

    async def __call__(self, visitor: Annotated[Visitor, Depends(_staff_visitor)]) -> Visitor:
        assert visitor.staff is not None
        if visitor.staff.role not in self.roles:
            raise StaffRoleRefused()
        return visitor


# Any staff member; the counter's staff (an agent or manager, at their store); a manager or an
# admin; an admin. `visitor.staff` is who it is.
StaffDep = Annotated[Visitor, Depends(_staff_visitor)]
CounterDep = Annotated[Visitor, Depends(RoleGate(("agent", "manager")))]
ManagerDep = Annotated[Visitor, Depends(RoleGate(("manager", "admin")))]
AdminDep = Annotated[Visitor, Depends(RoleGate(("admin",)))]


def staff_sign_in(request: Request, response: Response, token: str) -> None:
    """The staff session's cookie: HttpOnly, SameSite=Strict (no link from another site opens a
    staff page signed in), ending with the browser."""
    response.set_cookie(
        STAFF_COOKIE, token, httponly=True, samesite="strict", secure=not _settings(request).dev
    )


def login_redirect(request: Request) -> RedirectResponse:
    """To /login, then back to the page asked for (a path on this site only). A form posted after
    the session ended goes back to the page the form was on (its POST path may have no page)."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        referer = urlsplit(request.headers.get("referer", ""))
        same_site = referer.netloc == request.headers.get("host")
        target = (
            safe_next(referer.path + (f"?{referer.query}" if referer.query else ""))
            if same_site
            else "/account"
        )
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def safe_next(value: str | None, default: str = "/account") -> str:
    """A `next=` target that stays on this site: a path, never `//host` or `https://host`."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


# --- CSRF -------------------------------------------------------------------------------------


def _csrf_seed(request: Request) -> str:
    """The visitor's CSRF cookie, made on their first page (set on the answer by `page`)."""
    seed = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "csrf_seed", None)
    if seed is None:
        seed = secrets.token_urlsafe(24)
        request.state.csrf_seed = seed
    return seed


def csrf_token(request: Request) -> str:
    key = _settings(request).secret_key.get_secret_value().encode()
    return hmac.new(key, b"csrf:" + _csrf_seed(request).encode(), hashlib.sha256).hexdigest()


async def _checked_form(request: Request) -> FormData:
    """The POSTed form, once its CSRF token and its Origin are known to be this site's."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        ours = urlsplit(_settings(request).public_base_url)
        theirs = urlsplit(origin)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc) and theirs.netloc != (
            request.headers.get("host") or ""
        ):
            raise CsrfFailed()
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if (
        not isinstance(sent, str)
        or CSRF_COOKIE not in request.cookies
        or not hmac.compare_digest(sent, csrf_token(request))
    ):
        raise CsrfFailed()
    return form


# A POST's form, its CSRF token checked: every form route takes this rather than Form() fields.
FormDep = Annotated[FormData, Depends(_checked_form)]


# --- forms --------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)

# Pydantic's refusals as a person reads them, by error type; {field} and the error's own
# context ({min_length}, {max_length}, {ge}, {le}) are filled in.
_FORM_ERRORS = {
    "missing": _("Fill in this field."),
    "string_too_short": _("Use at least {min_length} characters."),
    "string_too_long": _("Use at most {max_length} characters."),
    "string_pattern_mismatch": _("This is not in the expected form."),
    "value_error": _("This is not in the expected form."),
    "int_parsing": _("Enter a whole number."),
    "decimal_parsing": _("Enter an amount."),
    "greater_than_equal": _("Enter at least {ge}."),
    "greater_than": _("Enter more than {gt}."),
    "less_than_equal": _("Enter at most {le}."),
    "literal_error": _("Choose one of the options."),
    "enum": _("Choose one of the options."),
    "uuid_parsing": _("Choose one of the options."),
}


def form_errors(error: ValidationError, language: str) -> dict[str, str]:
    """{field: message in the visitor's language}, the first problem of each field."""
    found: dict[str, str] = {}
    for e in error.errors():
        field = ".".join(str(p) for p in e["loc"]) or "form"
        if field in found:
            continue
        message = _FORM_ERRORS.get(e["type"], _("This is not in the expected form."))
        context = {k: v for k, v in (e.get("ctx") or {}).items() if isinstance(v, int | str)}
        try:
            found[field] = gettext(message, language, **context)
        except (KeyError, IndexError):
            found[field] = gettext(message, language)
    return found


def parse(
    model: type[M], form: Mapping[str, Any], language: str
) -> tuple[M | None, dict[str, str]]:
    """The form as `model`, or None and the fields' errors (in the visitor's language)."""
    data = {k: v for k, v in form.items() if k != CSRF_FIELD and v != ""}
    try:
        return model.model_validate(data), {}
    except ValidationError as error:
        return None, form_errors(error, language)


# --- formats ------------------------------------------------------------------------------------


def money(amount: int, code: str, language: str) -> str:
    return Money(amount, currency(code)).format(language)


def data(n: int, language: str) -> str:
    """A volume as carriers write it (1 GB = 1024 MB), the number in the locale's own digits."""
    for size, name in ((GB, "GB"), (MB, "MB"), (KB, "KB")):
        if abs(n) >= size:
            return f"{format_decimal(n / size, format='#,##0.##', locale=babel_locale(language))} {name}"
    return f"{n} B"


def when(moment: datetime | date | None, language: str, *, time: bool = True) -> str:
    """A date (and time) in Hong Kong time, as the locale writes it."""
    if moment is None:
        return ""
    locale = babel_locale(language)
    if isinstance(moment, datetime):
        if not time:
            return format_date(moment.astimezone(LOCAL_TIME).date(), "medium", locale=locale)
        local = moment.astimezone(LOCAL_TIME)
        # The date as the locale writes it, the time to the minute (seconds are noise to a reader).
        return f"{format_date(local.date(), 'medium', locale=locale)} {format_time(local, 'short', locale=locale)}"
    return format_date(moment, "medium", locale=locale)


@dataclass(frozen=True)
class Formats:
    """The formats a template calls, bound to the page's language: fmt.money(amount, "HKD")."""

    language: str

    def money(self, amount: int, code: str) -> str:
        return money(amount, code, self.language)

    def data(self, n: int) -> str:
        return data(n, self.language)

    def when(self, moment: datetime | date | None, time: bool = True) -> str:
        return when(moment, self.language, time=time)


# --- pages --------------------------------------------------------------------------------------


def translator(language: str) -> Callable[..., str]:
    def translate(message: str, **params: object) -> str:
        return gettext(message, language, **params)

    return translate


def _switch_url(request: Request, language: str) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    query.append(("lang", language))
    return request.url.path + "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query)


def page(
    request: Request,
    visitor: Visitor,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    private: bool = True,
) -> HTMLResponse:
    """A page of the site in the visitor's language. `private`: not stored by any cache."""
    language = visitor.language
    body = {
        "lang": language,
        "_": translator(language),
        "fmt": Formats(language),
        "visitor": visitor,
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token(request),
        "path": request.url.path,
        "languages": [
            (code, LANGUAGE_NAMES[code], _switch_url(request, code)) for code in LANGUAGES
        ],
        "dev": _settings(request).dev,
        **(context or {}),
    }
    response = templates.TemplateResponse(
        request,
        template,
        body,
        status_code=status_code,
        headers={
            "Content-Language": language,
            "Cache-Control": "private, no-store" if private else "public, max-age=60",
        },
    )
    remember(request, response)
    return response


def public_page(
    request: Request, visitor: Visitor, template: str, context: Mapping[str, Any] | None = None
) -> HTMLResponse:
    """A page anyone may see that says the same to everyone in a language (/, /stores): caches may
    keep it a minute, told that it varies with the language's sources. Never stored when it is one
    visitor's own: signed in (the header's log-out form carries their CSRF token), or setting a
    cookie (a first visit's CSRF seed, a language chosen by ?lang=)."""
    response = page(request, visitor, template, context, private=False)
    if visitor.signed_in or "set-cookie" in response.headers:
        response.headers["Cache-Control"] = "private, no-store"
    else:
        response.headers["Vary"] = "Accept-Language, Cookie"
    return response


def remember(request: Request, response: Response) -> None:
    """Sets the cookies a page needs: the CSRF seed on a first visit, and a language chosen by ?lang=."""
    secure = not _settings(request).dev
    seed = getattr(request.state, "csrf_seed", None)
    if seed is not None and CSRF_COOKIE not in request.cookies:
        response.set_cookie(CSRF_COOKIE, seed, httponly=True, samesite="lax", secure=secure)
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES and request.cookies.get(LANG_COOKIE) != chosen:
        response.set_cookie(
            LANG_COOKIE, chosen, max_age=LANG_COOKIE_SECONDS, samesite="lax", secure=secure
        )


def csv_download(
    header: Sequence[str], rows: Iterable[Sequence[object]], filename: str, language: str
) -> Response:
    """A CSV file to save and open in a spreadsheet (`tongka.spreadsheet`: cells guarded against
    formulas, the BOM for Excel), never kept by a cache."""
    return Response(
        spreadsheet.to_csv([gettext(h, language) for h in header], rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, no-store",
            "Content-Language": language,
        },
    )


def redirect(request: Request, to: str) -> RedirectResponse:
    """After a form: see the result with a GET (303), never a re-POST on reload."""
    response = RedirectResponse(to, status_code=303)
    remember(request, response)
    return response


def sign_in(
    request: Request, response: Response, session: Any, account: Account, ttl_seconds: int
) -> None:
    """Starts a web session for `account` on `response` (a new token: the old cookie's is not reused)."""
    token = accounts.issue_token(session, account, ttl_seconds)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=ttl_seconds,
        httponly=True,
        samesite="lax",
        secure=not _settings(request).dev,
    )


def sign_out(request: Request, session: Any, response: Response) -> None:
    """Ends this browser's session: its token deleted, its cookie cleared."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        accounts.revoke_token(session, token)
    response.delete_cookie(SESSION_COOKIE)


# --- errors as pages ----------------------------------------------------------------------------


def wants_page(request: Request) -> bool:
    """A person's browser, not the API or a provider: shown an error page rather than JSON."""
    path = request.url.path
    if path.startswith(("/api/", "/nchf-", "/oauth2/", "/sandbox/v", "/openapi")):
        return False
    return "text/html" in request.headers.get("accept", "")


def error_page(request: Request, error: TongkaError, language: str) -> Response:
    """A refusal as a page in the visitor's language: what happened and where to go; never a trace."""
    if isinstance(error, StaffLoginRequired):
        target = request.url.path if request.method == "GET" else "/staff"
        return RedirectResponse(f"/staff/login?next={quote(target, safe='')}", status_code=303)
    if isinstance(error, LoginRequired):
        return login_redirect(request)
    # A path no route took never met _visitor: the language chosen on the site still counts.
    language = _chosen_language(request) or language
    visitor = Visitor(language)
    response = page(
        request,
        visitor,
        "web/error.html",
        {"title": gettext(error.title, language), "detail": error.detail(language)},
        status_code=error.status,
    )
    for name, value in error.headers().items():
        if name.lower() != "www-authenticate":
            response.headers[name] = value
    return response
