"""Structured logs: key=value lines in dev, JSON lines in production (`TONGKA_LOG_JSON=true`).

Nothing secret reaches a line: `redact` blanks every value under a sensitive key (tokens,
passwords, secrets, one-time codes, identity numbers), every pydantic secret, and bearer or
basic credentials inside any text. Tracebacks are plain and short, never with local variables
(a Rich traceback's locals once printed a bearer token); in JSON they stay structured.
`later` hands a record to a thread of its own, so an error on the event loop is neither
formatted nor written there (a burst of them once stalled the server for seconds each).
"""

from __future__ import annotations

import atexit
import logging
import queue
import re
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import structlog
from pydantic import SecretBytes, SecretStr
from structlog.typing import EventDict, ExcInfo

# The innermost frames of a traceback that a record keeps: where it went wrong, in a few lines.
FRAMES = 8
REDACTED = "[redacted]"
# Keys whose values never reach a line, compared in lower case with '-' as '_'...
SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "code",
        "bind_code",
        "otp",
        "one_time_code",
        "verification_code",
        "document_number",
        "id_number",
        "identity_number",
        "hkid",
        "card_number",
        "cvc",
        "cvv",
        "pan",
        "api_key",
        "apikey",
        "private_key",
        "client_secret",
        "coupon_code",
    }
)
# ...and keys that contain one of these.
SENSITIVE_PARTS = ("password", "passwd", "secret", "token", "credential", "private_key")
# A credential inside text (an error message quoting a header): any bearer token, a basic one's base64.
_CREDENTIAL = re.compile(
    r"(?i)\b(bearer(?:\s+|%20)[A-Za-z0-9._~+/=-]+|basic(?:\s+|%20)[A-Za-z0-9+/]{12,}=*)"
)
_PLAIN = (int, float, bool, type(None))


def _sensitive(key: object) -> bool:
    k = str(key).lower().replace("-", "_")
    return k in SENSITIVE_KEYS or any(part in k for part in SENSITIVE_PARTS)


def _clean(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _CREDENTIAL.sub(
            lambda m: m.group(1).split()[0].split("%20")[0] + " " + REDACTED, value
        )
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if depth < 8 and isinstance(value, dict):
        return {k: REDACTED if _sensitive(k) else _clean(v, depth + 1) for k, v in value.items()}
    if depth < 8 and isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    # Anything else would be printed through its repr (headers, a request, an exception): clean that.
    return _clean(repr(value), depth)


def redact(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: no secret, token, password, one-time code or identity number in a line."""
    return {
        k: REDACTED if k != "event" and _sensitive(k) else _clean(v) for k, v in event_dict.items()
    }


OURS = str(Path(__file__).parent) + "/"
CHAIN = 3  # exceptions of a chain (raised from / during handling of) kept in a record
CAUSE_FRAMES = 2  # frames kept of each earlier exception of a chain


def _frames(tb: TracebackType | None, limit: int) -> tuple[list[traceback.FrameSummary], int]:
    """The frames worth a line: the innermost (where it went wrong) and the innermost of tongka's own
    (which of our calls led there); returns them, outermost first, and how many were left out."""
    stack = traceback.extract_tb(tb)
    inner = set(range(max(0, len(stack) - (limit + 1) // 2), len(stack)))
    ours = [i for i, f in enumerate(stack) if f.filename.startswith(OURS) and i not in inner]
    keep = sorted(
        inner | set(ours[len(ours) - (limit - len(inner)) :] if limit > len(inner) else ())
    )
    return [stack[i] for i in keep], len(stack) - len(keep)


def _chain(error: BaseException) -> list[tuple[BaseException, bool]]:
    """The exception and what it was raised from or during (is_cause), last raised first."""
    chain: list[tuple[BaseException, bool]] = []
    current: BaseException | None = error
    is_cause = False
    while current is not None and len(chain) < CHAIN and all(current is not e for e, _ in chain):
        chain.append((current, is_cause))
        if current.__cause__ is not None:
            current, is_cause = current.__cause__, True
        elif not current.__suppress_context__:
            current, is_cause = current.__context__, False
        else:
            current = None
    return chain


def traceback_data(exc_info: ExcInfo) -> list[dict[str, Any]]:
    """The traceback as data (structlog's dict_tracebacks layout, without locals), short."""
    out = []
    for n, (error, is_cause) in enumerate(_chain(exc_info[1])):
        frames, skipped = _frames(error.__traceback__, CAUSE_FRAMES if n else FRAMES)
        out.append(
            {
                "exc_type": type(error).__name__,
                "exc_value": str(error),
                "is_cause": is_cause,
                "frames": [
                    {"filename": f.filename, "lineno": f.lineno, "name": f.name} for f in frames
                ],
                "frames_skipped": skipped,
            }
        )
    return out


def traceback_text(exc_info: ExcInfo) -> str:
    """A plain, short traceback (innermost frames, no local variables), earliest exception first."""
    chain = _chain(exc_info[1])
    parts = []
    for n, (error, is_cause) in reversed(list(enumerate(chain))):
        frames, skipped = _frames(error.__traceback__, CAUSE_FRAMES if n else FRAMES)
        lines = [f"Traceback (innermost frames; {skipped} left out):" if skipped else "Traceback:"]
        for f in frames:
            lines.append(f'  File "{f.filename}", line {f.lineno}, in {f.name}')
            if f.line:
                lines.append(f"    {f.line.strip()}")
        lines.append("".join(traceback.format_exception_only(type(error), error)).rstrip())
        parts.append("\n".join(lines))
        if n:  # how the next one (raised later) came from this one
            parts.append(
                "The above exception was the direct cause of the following exception:"
                if is_cause
                else "During handling of the above exception, another exception occurred:"
            )
    return "\n".join(parts)


class _Stderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured (a command run
    inside the process, as the tests' CLI runner does, swaps it for a while and closes its own). A line
    that cannot be written is lost rather than failing the request that logged it."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (ValueError, OSError):
            return 0

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except (ValueError, OSError):
            pass


# A receipt's page is found by its random id, which is the secret; query strings may carry anything.
_RECEIPT_LINK = re.compile(r"^/receipts/(?!verify$|public-key$)[^/]+")


def access_path(full_path: str) -> str:
    """A request's path as uvicorn's access line may show it: no query string, no receipt id."""
    path, query, _ = full_path.partition("?")
    return _RECEIPT_LINK.sub("/receipts/…", path) + ("?…" if query else "")


class AccessLineFilter(logging.Filter):
    """uvicorn's access log (`client - "METHOD path HTTP/x" status`) with the path shown by `access_path`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            if isinstance(path, str):
                record.args = (client, method, access_path(path), version, status)
        return True


def configure(json: bool, file: TextIO | None = None) -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLineFilter) for f in access.filters):
        access.addFilter(AccessLineFilter())
    if (
        json
    ):  # the traceback as data: type, message and frames (file, line, function), without locals
        exceptions: Any = traceback_data
        renderer: Any = structlog.processors.JSONRenderer()
    else:
        exceptions = traceback_text
        # plain_traceback: never Rich's, whose default shows every frame's local variables.
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Formatted before redact, so a token in an exception's message is blanked too.
            structlog.processors.ExceptionRenderer(exceptions),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        # stderr: a command's own output (a statement, a report) stays clean on stdout.
        # structlog types `file` as TextIO; it only writes and flushes, which _Stderr does.
        logger_factory=structlog.PrintLoggerFactory(file=file or _Stderr()),  # type: ignore[arg-type]
        # Not cached: loggers made at import follow a later configure (create_app's, a test's).
        cache_logger_on_first_use=False,
    )


# Records waiting for the log thread; past this many, new ones are counted and dropped, never waited for.
BACKLOG = 1000
_queue: queue.Queue[tuple[str, str, dict[str, Any]] | None] = queue.Queue(BACKLOG)
_dropped = 0
_thread: threading.Thread | None = None
_start = threading.Lock()
_count = threading.Lock()


def later(level: str, event: str, **fields: Any) -> None:
    """Log on the log thread (`level`: "error", "warning", "info"); returns at once, never blocks."""
    global _dropped, _thread
    if _thread is None:
        with _start:
            if _thread is None:
                _thread = threading.Thread(target=_write, name="tongka-log", daemon=True)
                _thread.start()
                atexit.register(_stop)
    try:
        _queue.put_nowait((level, event, fields))
    except queue.Full:
        with _count:
            _dropped += 1


def _write() -> None:
    global _dropped
    while (item := _queue.get()) is not None:
        level, event, fields = item
        if _dropped:  # the first record written after some were dropped says how many
            with _count:
                fields, _dropped = {**fields, "records_dropped": _dropped}, 0
        try:
            getattr(structlog.get_logger(), level)(event, **fields)
        except Exception:  # a record that cannot be written must not end the thread
            pass
        finally:
            _queue.task_done()
    _queue.task_done()


def drain() -> None:
    """Wait until every record handed to `later` so far is written."""
    if _thread is not None:
        _queue.join()


def _stop() -> None:
    """At exit: what is queued is written (for a moment at most), then the thread ends."""
    try:
        _queue.put(None, timeout=1)
    except queue.Full:
        return
    if _thread is not None:
        _thread.join(timeout=2)
