"""The one base error. Each domain declares its own errors at the top of its service module.

An error carries an HTTP status, a stable machine `code` the app can switch on, and an
English message (marked for translation) that is shown in the reader's language.
The API answers RFC 9457 problem details; a business refusal is never a 500.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tongka.i18n import _, gettext, wait


class TongkaError(Exception):
    # Class attributes that a subclass sets; an instance may set its own (a message given on raise).
    status: int = 400
    code: str = "bad_request"
    message: str = _("The request cannot be processed.")
    # The refusal stands, but what the request did so far is kept (a failed code try counts).
    commit_anyway: ClassVar[bool] = False

    def __init__(self, message: str | None = None, /, **params: Any) -> None:
        if message is not None:
            self.message = message
        self.params = params
        super().__init__(self.message.format(**params) if params else self.message)

    def headers(self) -> dict[str, str]:
        return {}

    def detail(self, language: str) -> str:
        return gettext(self.message, language, **self.params)

    def problem(self, language: str) -> dict[str, Any]:
        return {
            "type": f"urn:tongka:problem:{self.code}",
            "title": gettext(self.title, language),
            "status": self.status,
            "detail": self.detail(language),
            "code": self.code,
        }

    @property
    def title(self) -> str:
        return _TITLES.get(self.status, _("Request refused"))


class BadRequest(TongkaError):
    status = 400


class Unauthorized(TongkaError):
    status = 401
    code = "not_authenticated"
    message = _("Log in to continue.")

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(TongkaError):
    status = 403
    code = "forbidden"
    message = _("You may not do this.")


class NotFound(TongkaError):
    status = 404
    code = "not_found"
    message = _("Not found.")


class Conflict(TongkaError):
    status = 409
    code = "conflict"
    message = _("This conflicts with the current state.")


class Unprocessable(TongkaError):
    status = 422
    code = "unprocessable"
    message = _("The request is not valid.")


class TooManyRequests(TongkaError):
    status = 429
    code = "too_many_requests"
    message = _("Too many requests. Try again later.")

    # A message may say `{wait}`: the `seconds` given, as words in the reader's language.
    def __init__(self, message: str | None = None, /, **params: Any) -> None:
        if "seconds" in params:
            params.setdefault("wait", wait(params["seconds"], "en"))
        super().__init__(message, **params)

    def headers(self) -> dict[str, str]:
        seconds = self.params.get("seconds")
        return {"Retry-After": str(seconds)} if seconds is not None else {}

    def detail(self, language: str) -> str:
        params = dict(self.params)
        if "seconds" in params:
            params["wait"] = wait(params["seconds"], language)
        return gettext(self.message, language, **params)


class ServiceUnavailable(TongkaError):
    """Busy for a moment, not broken: try again after `Retry-After` seconds."""

    status = 503
    code = "service_unavailable"
    message = _("The service is busy. Try again in a moment.")

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.params.get("seconds", 1))}


class DatabaseBusy(ServiceUnavailable):
    """Contention, not a fault: the database was not had within the busy timeout (`db.busy`)."""

    code = "database_busy"


_TITLES = {
    400: _("Bad request"),
    401: _("Not logged in"),
    403: _("Forbidden"),
    404: _("Not found"),
    409: _("Conflict"),
    422: _("Invalid request"),
    428: _("Precondition required"),
    429: _("Too many requests"),
    503: _("Service busy"),
}
