"""Usage files from partner networks: reading them one record at a time, and writing what was rejected.

A file is CSV with a header, or JSON Lines (one object a line), of records with the fields
`record_id`, `imsi` or `msisdn`, `plmn`, `start`, `end`, `bytes_up`, `bytes_down` (other
fields are ignored). It is read line by line, never whole, and a physical line is at most
`MAX_LINE_BYTES`, so memory stays the same whatever the file's size. `usage_import.py`
charges what this reads.

What a record may say: `record_id` 1 to 64 printable characters (in JSON a string or an
integer); exactly one of `imsi` (6 to 15 digits) and `msisdn` (E.164 digits, with or
without "+"); `plmn` "MCC-MNC" or the compact "MCCMNC" (5 digits: a 2-digit MNC, 6 digits:
a 3-digit MNC; the MNC's length is part of the PLMN in 3GPP); `start` and `end` ISO 8601
with their offset, between the years 2000 and 2099 (UTC), `end` not before `start`;
`bytes_up` and `bytes_down` whole numbers (JSON integers or digit strings), each at most
`MAX_BYTES`. A JSON line is an object nested at most `MAX_JSON_DEPTH` deep, with no NaN or
Infinity; any line that is not is rejected with its reason, and the import goes on.

Rejected records go to a reject file in the input's format: the record as read, then its
line in the file, a stable reason code and a message. The CSV one has the record's eight
columns first (any others of the input are left out), so a corrected reject file can be
imported as it is. Its cells cannot run as spreadsheet formulas (OWASP, CSV injection): one
that starts with = + - @ a tab or a carriage return, or with a quote before one of them or
another quote, gets a leading quote `'`, and reading a CSV file drops that quote again
(`escape_cell`, `unescape_cell`): "+85291234567" is written '+85291234567 and read back as it was.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from tongka.spreadsheet import escape_cell, unescape_cell

FORMATS = ("csv", "jsonl")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
COLUMNS = ("record_id", "imsi", "msisdn", "plmn", "start", "end", "bytes_up", "bytes_down")
REQUIRED_COLUMNS = (
    "record_id",
    "plmn",
    "start",
    "end",
    "bytes_up",
    "bytes_down",
)  # and imsi or msisdn
REJECT_COLUMNS = ("reject_line", "reject_reason", "reject_message")

MAX_LINE_BYTES = 64 * 1024  # a longer physical line is rejected unread: memory stays bounded
MAX_RECORD_ID = 64
MAX_BYTES = 2**50  # 1 PiB one way in one record: a sanity bound far beyond any real session
MAX_JSON_DEPTH = (
    32  # a record is one flat object; deeper nesting only costs stack (and once, the import)
)
EARLIEST, LATEST = (
    datetime(2000, 1, 1, tzinfo=UTC),
    datetime(2100, 1, 1, tzinfo=UTC),
)  # beyond: not a usage record

# Reasons a record is rejected: stable codes, written in the reject file.
MALFORMED = "malformed"
END_BEFORE_START = "end_before_start"


class ImportRefused(Exception):
    """The file cannot be imported at all (unknown format, missing columns): nothing was done."""


class Rejected(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class _LineTooLong(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Record:
    record_id: str
    imsi: str | None
    msisdn: str | None  # E.164 with its "+"
    plmn: str  # "MCC-MNC"
    start: datetime
    end: datetime
    bytes_up: int
    bytes_down: int

    @property
    def used_bytes(self) -> int:
        return self.bytes_up + self.bytes_down


@dataclass(slots=True)
class Item:
    """One record as read: where it was, what it said (for the reject file), and what it parsed to."""

    line_number: int
    raw: dict[str, Any] | None  # None when the line could not be read as a record at all
    record: Record | None = None
    rejected: Rejected | None = None


# --- reading ------------------------------------------------------------------------------


class _Lines:
    """The text lines of a binary file, counting the bytes read (for progress) and the line number.

    A line longer than MAX_LINE_BYTES is skipped without being held in memory and raises
    `_LineTooLong` once; iterating again goes on with the next line (csv.reader resets its
    state on each row, so it survives that).
    """

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.position = 0
        self.number = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self.source.readline(MAX_LINE_BYTES + 1)
        if not raw:
            raise StopIteration
        self.number += 1
        self.position += len(raw)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while rest := self.source.readline(
                MAX_LINE_BYTES
            ):  # skip the rest of it, a piece at a time
                self.position += len(rest)
                if rest.endswith(b"\n"):
                    break
            raise _LineTooLong()
        # Undecodable bytes become U+FFFD, which no field accepts: the record is rejected, not the file.
        text = raw.decode("utf-8", errors="replace")
        if self.number == 1:
            text = text.removeprefix("\ufeff")
        return text


def _too_long(number: int) -> Item:
    return Item(
        number,
        None,
        rejected=Rejected(MALFORMED, f"the line is longer than {MAX_LINE_BYTES:,} bytes"),
    )


def _csv_items(lines: _Lines) -> Iterator[Item]:
    """Reads and checks the header now (a bad one refuses the file), then the records as iterated."""
    reader = csv.reader(lines)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise ImportRefused("the file is empty: a CSV file starts with its header") from None
    except (csv.Error, _LineTooLong):
        raise ImportRefused("the first line is not a CSV header") from None
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if not {"imsi", "msisdn"} & set(header):
        missing.append("imsi or msisdn")
    if missing:
        raise ImportRefused(f"missing columns: {', '.join(missing)}")
    return _csv_rows(lines, reader, header)


def _csv_rows(lines: _Lines, reader: Any, header: list[str]) -> Iterator[Item]:
    while True:
        start = lines.number + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except _LineTooLong:
            yield _too_long(lines.number)
            continue
        except csv.Error as e:
            yield Item(start, None, rejected=Rejected(MALFORMED, f"not readable as CSV: {e}"))
            continue
        if not row:  # a blank line
            continue
        raw = dict(zip(header, map(unescape_cell, row), strict=False))
        item = Item(start, raw)
        if len(row) != len(header):
            item.rejected = Rejected(
                MALFORMED, f"{len(row)} fields where the header has {len(header)}"
            )
        yield item


def _jsonl_items(lines: _Lines) -> Iterator[Item]:
    while True:
        try:
            text = next(lines)
        except StopIteration:
            return
        except _LineTooLong:
            yield _too_long(lines.number)
            continue
        if not text.strip():
            continue
        if _too_deep(text):
            message = f"nested more than {MAX_JSON_DEPTH} deep"
            yield Item(
                lines.number, {"raw": text.rstrip("\r\n")}, rejected=Rejected(MALFORMED, message)
            )
            continue
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:
            yield Item(
                lines.number,
                {"raw": text.rstrip("\r\n")},
                rejected=Rejected(MALFORMED, f"not JSON: {e}"),
            )
            continue
        if not isinstance(value, dict):
            yield Item(
                lines.number,
                {"raw": text.rstrip("\r\n")},
                rejected=Rejected(MALFORMED, "not a JSON object"),
            )
            continue
        yield Item(lines.number, value)


_TOKEN = re.compile(r'\\.|["\[\]{}]')  # an escape pair, a quote or a bracket


def _too_deep(text: str) -> bool:
    """Whether the JSON text nests deeper than MAX_JSON_DEPTH (without parsing it: that is what recurses).
    One pass over its quotes, escapes and brackets; the brackets within strings do not count."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:  # the common case, at C speed
        return False
    depth, in_string = 0, False
    for token in _TOKEN.findall(text):
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        else:
            depth -= 1
    return False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _text(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Rejected(MALFORMED, f"{name} must be text")
    return str(value).strip() or None


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _whole(raw: Mapping[str, Any], name: str) -> int:
    value = raw.get(name)
    if isinstance(value, str) and _digits(value.strip()):
        if len(value.strip().lstrip("0")) > len(
            str(MAX_BYTES)
        ):  # int() of thousands of digits is refused, or slow
            raise Rejected(MALFORMED, f"{name} is more than {MAX_BYTES:,} bytes")
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Rejected(MALFORMED, f"{name} must be a whole number of bytes, 0 or more")
    if value > MAX_BYTES:
        raise Rejected(MALFORMED, f"{name} is more than {MAX_BYTES:,} bytes")
    return value


def _instant(raw: Mapping[str, Any], name: str) -> datetime:
    text = _text(raw, name)
    try:
        value = datetime.fromisoformat(text) if text and isinstance(raw.get(name), str) else None
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise Rejected(
            MALFORMED,
            f"{name} must be an ISO 8601 date and time with its offset (2030-01-15T08:00:00+08:00)",
        )
    if (
        not EARLIEST <= value < LATEST
    ):  # also keeps it within the calendar in every time zone (Hong Kong's day)
        raise Rejected(
            MALFORMED, f"{name} must be between {EARLIEST.year} and {LATEST.year - 1} (UTC)"
        )
    return value


def parse_plmn(text: str | None) -> str | None:
    """ "MCC-MNC" or "MCCMNC" (5 or 6 digits) as the registry writes it ("454-00"), or None."""
    if not text:
        return None
    mcc, dash, mnc = text.partition("-")
    if not dash:
        mcc, mnc = text[:3], text[3:]
    if len(mcc) == 3 and len(mnc) in (2, 3) and _digits(mcc) and _digits(mnc):
        return f"{mcc}-{mnc}"
    return None


def parse_record(raw: Mapping[str, Any]) -> Record:
    """A record from its fields as read; raises `Rejected` saying what is wrong with it."""
    record_id = _text(raw, "record_id")
    if (
        not record_id
        or len(record_id) > MAX_RECORD_ID
        or not record_id.isprintable()
        or "\ufffd" in record_id
    ):
        raise Rejected(MALFORMED, f"record_id must be 1 to {MAX_RECORD_ID} printable characters")
    imsi, msisdn = _text(raw, "imsi"), _text(raw, "msisdn")
    if (imsi is None) == (msisdn is None):
        raise Rejected(MALFORMED, "give exactly one of imsi and msisdn")
    if imsi is not None and not (_digits(imsi) and 6 <= len(imsi) <= 15):
        raise Rejected(MALFORMED, "imsi must be 6 to 15 digits")
    if msisdn is not None:
        digits = msisdn.removeprefix("+")
        if not (_digits(digits) and 7 <= len(digits) <= 15):
            raise Rejected(
                MALFORMED, "msisdn must be an E.164 number: 7 to 15 digits, with or without +"
            )
        msisdn = "+" + digits
    plmn = parse_plmn(_text(raw, "plmn"))
    if plmn is None:
        raise Rejected(MALFORMED, "plmn must be MCC-MNC (454-00) or MCCMNC (45400)")
    start, end = _instant(raw, "start"), _instant(raw, "end")
    bytes_up, bytes_down = _whole(raw, "bytes_up"), _whole(raw, "bytes_down")
    if end < start:
        raise Rejected(END_BEFORE_START, "end is before start")
    return Record(record_id, imsi, msisdn, plmn, start, end, bytes_up, bytes_down)


def read_items(source: BinaryIO, fmt: str) -> tuple[_Lines, Iterator[Item]]:
    """The records of `source` one at a time, parsed; `_Lines.position` says how far the reading is."""
    if fmt not in FORMATS:
        raise ImportRefused(f"unknown format {fmt!r}: csv or jsonl")
    lines = _Lines(source)
    items = _csv_items(lines) if fmt == "csv" else _jsonl_items(lines)

    def parsed() -> Iterator[Item]:
        for item in items:
            if item.rejected is None and item.raw is not None:
                try:
                    item.record = parse_record(item.raw)
                except Rejected as e:
                    item.rejected = e.with_traceback(None)
            yield item

    return lines, parsed()


# --- the reject file ----------------------------------------------------------------------


class RejectWriter:
    """Rejected records in the input's format: the record as read, then its line, reason and message."""

    def __init__(self, out: IO[str], fmt: str) -> None:
        self.out = out
        self.csv = csv.writer(out) if fmt == "csv" else None
        if self.csv:
            self.csv.writerow([*COLUMNS, *REJECT_COLUMNS])

    def write(self, item: Item, rejected: Rejected) -> None:
        raw = item.raw or {}
        if self.csv:
            cells = [_plain(raw.get(c)) for c in COLUMNS] + [
                str(item.line_number),
                rejected.reason,
                rejected.message,
            ]
            self.csv.writerow([escape_cell(cell) for cell in cells])
        else:
            self.out.write(
                json.dumps(
                    {
                        **raw,
                        "reject_line": item.line_number,
                        "reject_reason": rejected.reason,
                        "reject_message": rejected.message,
                    },
                    ensure_ascii=False,
                    default=str,
                )
                + "\n"
            )


def _plain(value: Any) -> str:
    return (
        "" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
    )


# --- file names ---------------------------------------------------------------------------


def format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ImportRefused(f"unknown format {fmt!r}: csv or jsonl")
        return fmt
    found = EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise ImportRefused(
            f"cannot tell the format of {path.name} from its extension: give --format csv or jsonl"
        )
    return found


def rejects_path(path: Path, fmt: str) -> Path:
    """usage.csv -> usage.rejects.csv"""
    return path.with_name(f"{path.stem if path.suffix else path.name}.rejects.{fmt}")
