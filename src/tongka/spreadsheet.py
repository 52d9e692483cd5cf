"""CSV as people open it in a spreadsheet: cells that cannot run as formulas (OWASP, CSV
injection), and UTF-8 with the byte-order mark Excel needs to read Chinese."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal

_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet cell a formula
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")  # a plain number stays one (a minus sign is no formula)


def unescape_cell(cell: str) -> str:
    """A CSV cell as meant: without the quote `escape_cell` (or a spreadsheet) put before a formula character."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] and cell[1] in (*_FORMULA, "'") else cell


def escape_cell(cell: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs; `unescape_cell` gives back `cell`."""
    return "'" + cell if cell[:1] in _FORMULA or unescape_cell(cell) != cell else cell


def cell(value: object) -> str | int | Decimal:
    """A value as a cell: numbers as numbers, dates in ISO form, any text guarded."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | Decimal):
        return value
    if isinstance(value, date):
        return value.isoformat()
    text = "" if value is None else str(value)
    return text if _NUMBER.match(text) else escape_cell(text)


def to_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([cell(h) for h in header])
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
