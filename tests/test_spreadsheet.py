"""CSV cells a spreadsheet shows as written and never runs (every CSV download goes through here)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tongka import spreadsheet


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("=1+2", "'=1+2"),
        ("+86", "'+86"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-1+2", "'-1+2"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("\tx", "'\tx"),
        ("'=already", "''=already"),
        ("5 GB", "5 GB"),
        ("-3", "-3"),  # a plain number stays a number: a minus sign is no formula
        ("-12.50", "-12.50"),
        (-1250, -1250),
        (Decimal("12.50"), Decimal("12.50")),
        (date(2026, 12, 7), "2026-12-07"),
        (None, ""),
    ],
)
def test_cells_that_look_like_formulas_are_quoted(value: object, kept: object) -> None:
    assert spreadsheet.cell(value) == kept


def test_the_file_starts_with_the_bom_and_round_trips_text() -> None:
    body = spreadsheet.to_csv(["名稱", "amount"], [["=HYPERLINK()", -5]])
    assert body.startswith("\ufeff".encode())
    assert body.decode("utf-8-sig").splitlines() == ["名稱,amount", "'=HYPERLINK(),-5"]
    assert spreadsheet.unescape_cell(spreadsheet.escape_cell("'=x")) == "'=x"
