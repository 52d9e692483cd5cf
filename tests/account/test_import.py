"""`tongka lines import FILE` and `tongka lines list`: the SIM inventory as operations load it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.account import factories as af
from tests.account.factories import cn, good_row, hk, iccid, imsi, write_csv
from tongka import clock
from tongka.account import service as accounts
from tongka.account.models import Line
from tongka.db import transaction


def all_lines(sessions) -> dict[str, Line]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return {line.iccid: line for line in s.scalars(select(Line))}


def line_count(sessions) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Line)) or 0


def test_good_rows_are_kept_in_e164_form(cli, sessions, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "lines.csv",
        good_row(1),
        f"{iccid(2)},+852 6100 0002,,",  # Hong Kong number only, with spaces
        f"{iccid(3)},,+86 139-0000-0003,{imsi(3)}",  # mainland number only
    )
    result = cli("lines", "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "added 3, unchanged 0, rejected 0"
    assert result.stderr == ""

    lines = all_lines(sessions)
    assert set(lines) == {iccid(1), iccid(2), iccid(3)}
    one, two, three = lines[iccid(1)], lines[iccid(2)], lines[iccid(3)]
    assert (one.hk_number, one.cn_number, one.imsi) == (hk(1), cn(1), imsi(1))
    assert (two.hk_number, two.cn_number, two.imsi) == ("+85261000002", None, None)
    assert (three.hk_number, three.cn_number, three.imsi) == (None, "+8613900000003", imsi(3))
    assert all(line.account_id is None and line.status == "active" for line in lines.values())


BAD_ROWS = {
    "bad ICCID check digit": (f"{af.bad_luhn(iccid(9))},{hk(9)},{cn(9)},", "invalid ICCID"),
    "ICCID not starting 89": (f"1234567890123456782,{hk(9)},{cn(9)},", "invalid ICCID"),
    "ICCID too short": (f"{iccid(9)[:15]},{hk(9)},{cn(9)},", "invalid ICCID"),
    "ICCID with letters": (f"89852002410000000AB,{hk(9)},{cn(9)},", "invalid ICCID"),
    "hk number not E.164": (f"{iccid(9)},61000009,,", "hk_number '61000009' is not in E.164 form"),
    "cn number not E.164": (
        f"{iccid(9)},,13900000009,",
        "cn_number '13900000009' is not in E.164 form",
    ),
    "HK number in the cn column": (
        f"{iccid(9)},,{hk(9)},",
        f"cn_number '{hk(9)}' is not a valid CN mobile number",
    ),
    "mainland number in the hk column": (
        f"{iccid(9)},{cn(9)},,",
        f"hk_number '{cn(9)}' is not a valid HK mobile number",
    ),
    "Hong Kong landline": (f"{iccid(9)},+85223456789,,", "is not a valid HK mobile number"),
    "no number": (f"{iccid(9)},,,{imsi(9)}", "a line needs at least one number"),
    "IMSI with a letter": (f"{iccid(9)},{hk(9)},,45400900000000A", "invalid IMSI"),
    "IMSI too short": (f"{iccid(9)},{hk(9)},,4540090", "invalid IMSI"),
    "hk number of another ICCID": (
        f"{iccid(9)},{hk(1)},,",
        f"number {hk(1)} belongs to another ICCID",
    ),
    "cn number of another ICCID": (
        f"{iccid(9)},,{cn(1)},",
        f"number {cn(1)} belongs to another ICCID",
    ),
    "IMSI of another ICCID": (f"{iccid(9)},{hk(9)},,{imsi(1)}", "duplicate ICCID, number or IMSI"),
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_a_bad_row_is_reported_with_its_line_number_and_skipped(
    cli, sessions, tmp_path: Path, kind: str
) -> None:
    bad, reason = BAD_ROWS[kind]
    path = write_csv(tmp_path / "lines.csv", good_row(1), bad, good_row(2))
    result = cli("lines", "import", str(path))

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [result.stderr.splitlines()[0]]  # one complaint
    assert result.stderr.startswith(f"{path}:3: ")
    assert reason in result.stderr
    assert result.stdout.strip() == "added 2, unchanged 0, rejected 1"
    # the good rows on either side were kept, the bad one was not
    assert set(all_lines(sessions)) == {iccid(1), iccid(2)}


def test_line_numbers_are_those_of_the_file(cli, sessions, tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    path.write_text(
        "\n".join(
            [
                "iccid,hk_number,cn_number,imsi",  # 1
                good_row(1),  # 2
                "",  # 3: blank lines are skipped but counted
                f"{iccid(4)},,,",  # 4: no number
                good_row(2),  # 5
                f"{iccid(5)},{hk(2)},,",  # 6: hk(2) was taken on line 5 of this very file
                "",  # 7
                "",  # 8
                f"{iccid(6)},{hk(6)},{hk(7)},",  # 9: HK number in the cn column
                good_row(3),  # 10
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    result = cli("lines", "import", str(path))

    assert result.exit_code == 1
    assert [line.split(": ", 1)[0] for line in result.stderr.splitlines()] == [
        f"{path}:4",
        f"{path}:6",
        f"{path}:9",
    ]
    assert result.stdout.strip() == "added 3, unchanged 0, rejected 3"
    assert set(all_lines(sessions)) == {iccid(1), iccid(2), iccid(3)}


def test_same_number_on_two_iccids_in_one_file_keeps_the_first(
    cli, sessions, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "lines.csv", f"{iccid(1)},{hk(1)},,", f"{iccid(2)},{hk(1)},{cn(2)},"
    )
    result = cli("lines", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"{path}:3: number {hk(1)} belongs to another ICCID"
    lines = all_lines(sessions)
    assert set(lines) == {iccid(1)}
    # nothing of the refused row slipped in, not even its other number
    assert [line.cn_number for line in lines.values()] == [None]


def test_exit_code_is_zero_only_when_nothing_was_rejected(cli, tmp_path: Path) -> None:
    clean = write_csv(tmp_path / "clean.csv", good_row(1))
    assert cli("lines", "import", str(clean)).exit_code == 0
    dirty = write_csv(tmp_path / "dirty.csv", good_row(2), f"{iccid(3)},,,")
    assert cli("lines", "import", str(dirty)).exit_code == 1


def test_reimporting_the_same_file_changes_nothing(cli, sessions, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "lines.csv", good_row(1), good_row(2), f"{iccid(3)},{hk(3)},,")
    first = cli("lines", "import", str(path))
    assert first.exit_code == 0 and first.stdout.strip() == "added 3, unchanged 0, rejected 0"
    before = {k: (v.id, v.hk_number, v.cn_number, v.imsi) for k, v in all_lines(sessions).items()}

    again = cli("lines", "import", str(path))
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "added 0, unchanged 3, rejected 0"
    assert line_count(sessions) == 3
    assert {
        k: (v.id, v.hk_number, v.cn_number, v.imsi) for k, v in all_lines(sessions).items()
    } == before


def test_reimport_in_another_spelling_or_without_imsi_is_unchanged(
    cli, sessions, tmp_path: Path
) -> None:
    assert cli("lines", "import", str(write_csv(tmp_path / "a.csv", good_row(1)))).exit_code == 0
    respelled = write_csv(
        tmp_path / "b.csv",
        f"{iccid(1)},+852 6100-0001,+86 139 0000 0001",
        header="iccid,hk_number,cn_number",
    )
    result = cli("lines", "import", str(respelled))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "added 0, unchanged 1, rejected 0"
    [line] = all_lines(sessions).values()
    assert line.imsi == imsi(1)  # a file without IMSIs does not erase the one on record


def test_reimport_of_an_iccid_with_other_numbers_is_refused(cli, sessions, tmp_path: Path) -> None:
    assert cli("lines", "import", str(write_csv(tmp_path / "a.csv", good_row(1)))).exit_code == 0
    changed = write_csv(tmp_path / "b.csv", f"{iccid(1)},{hk(2)},{cn(1)},{imsi(1)}")
    result = cli("lines", "import", str(changed))
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == f"{changed}:2: ICCID {iccid(1)} was imported before with other numbers or IMSI"
    )
    [line] = all_lines(sessions).values()
    assert line.hk_number == hk(1)


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("iccid,hk_number", "cn_number"),
        ("iccid,imsi", "cn_number, hk_number"),
        ("ICCID,HK,CN", "cn_number, hk_number, iccid"),
        ("", "cn_number, hk_number, iccid"),
    ],
)
def test_missing_columns_reject_the_file(
    cli, sessions, tmp_path: Path, header: str, missing: str
) -> None:
    path = write_csv(tmp_path / "lines.csv", f"{iccid(1)},{hk(1)},{cn(1)}", header=header)
    result = cli("lines", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"{path}:1: missing columns: {missing}"
    assert result.stdout.strip() == "added 0, unchanged 0, rejected 1"
    assert line_count(sessions) == 0


def test_imsi_column_is_optional(cli, sessions, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "lines.csv", f"{iccid(1)},{hk(1)},{cn(1)}", header="iccid,hk_number,cn_number"
    )
    result = cli("lines", "import", str(path))
    assert result.exit_code == 0, result.output
    [line] = all_lines(sessions).values()
    assert line.imsi is None


def test_columns_may_come_in_any_order(cli, sessions, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "lines.csv",
        f"{imsi(1)},{cn(1)},{iccid(1)},{hk(1)}",
        header="imsi,cn_number,iccid,hk_number",
    )
    assert cli("lines", "import", str(path)).exit_code == 0
    [line] = all_lines(sessions).values()
    assert (line.iccid, line.hk_number, line.cn_number, line.imsi) == (
        iccid(1),
        hk(1),
        cn(1),
        imsi(1),
    )


def test_a_file_saved_by_excel_with_a_bom_is_read(cli, sessions, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "lines.csv", good_row(1), bom=True)
    result = cli("lines", "import", str(path))
    assert result.exit_code == 0, result.output
    assert set(all_lines(sessions)) == {iccid(1)}


def test_a_missing_file_is_a_usage_error(cli, tmp_path: Path) -> None:
    result = cli("lines", "import", str(tmp_path / "nowhere.csv"))
    assert result.exit_code == 2


def test_list_unbound_shows_only_lines_nobody_has_bound(cli, sessions, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "lines.csv", good_row(1), good_row(2), f"{iccid(3)},,{cn(3)},")
    assert cli("lines", "import", str(path)).exit_code == 0
    with transaction(sessions) as s:
        owner = accounts.register(
            s, username="owner", password="a long password", email="o@example.com", language="en"
        )
        line = s.scalars(select(Line).where(Line.iccid == iccid(2))).one()
        line.account_id, line.bound_at = owner.id, clock.now()

    unbound = cli("lines", "list", "--unbound")
    assert unbound.exit_code == 0, unbound.output
    rows = unbound.stdout.splitlines()
    assert [row.split()[0] for row in rows] == [iccid(1), iccid(3)]
    assert all(row.split()[-1] == "unbound" for row in rows)
    assert hk(2) not in unbound.stdout and cn(2) not in unbound.stdout
    assert rows[1].split()[1:3] == ["-", cn(3)]  # a missing number is shown as "-"

    everything = cli("lines", "list")
    assert everything.exit_code == 0
    assert {row.split()[0]: row.split()[-1] for row in everything.stdout.splitlines()} == {
        iccid(1): "unbound",
        iccid(2): "bound",
        iccid(3): "unbound",
    }
