"""Helpers for the account and line tests: inventory rows, problem-details checks.

The cross-domain helpers (register, login, bind...) are in tests/factories.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from stdnum import luhn

HEADER = "iccid,hk_number,cn_number,imsi"


def iccid(serial: int) -> str:
    """A 19-digit ICCID with a correct Luhn check digit, outside the demo inventory's range."""
    body = f"8985200241{serial:08d}"
    return body + luhn.calc_check_digit(body)


def bad_luhn(iccid_: str) -> str:
    """The same ICCID with a wrong check digit."""
    return iccid_[:-1] + str((int(iccid_[-1]) + 1) % 10)


def hk(serial: int) -> str:
    return f"+8526100{serial:04d}"


def cn(serial: int) -> str:
    return f"+86139{serial:08d}"


def imsi(serial: int) -> str:
    return f"454009{serial:09d}"


def good_row(serial: int) -> str:
    return f"{iccid(serial)},{hk(serial)},{cn(serial)},{imsi(serial)}"


def write_csv(path: Path, *rows: str, header: str = HEADER, bom: bool = False) -> Path:
    path.write_text(("\ufeff" if bom else "") + "\n".join((header, *rows)) + "\n", encoding="utf-8")
    return path


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem-details answer with tongka's stable code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == f"urn:tongka:problem:{code}"
    assert body["code"] == code
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body  # type: ignore[no-any-return]
