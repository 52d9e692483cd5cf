"""`tongka stores import FILE`: the store list from CSV, by code, all or nothing; opening hours."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests import factories as f
from tongka.demo import STORES_CSV
from tongka.stores import service
from tongka.stores.models import Store

HEADER = (
    "code,name_en,name_zh_hans,name_zh_hant,district,address_en,address_zh_hans,address_zh_hant,"
    "hours,nearest_kind,nearest_en,nearest_zh_hans,nearest_zh_hant,latitude,longitude"
)


def row(
    code: str = "lo-wu",
    district: str = "North",
    hours: str = "daily 06:30-24:00",
    kind: str = "crossing",
    latitude: str = "22.5281",
    longitude: str = "114.113101",
    name: str = "tongka Lo Wu",
) -> str:
    return (
        f'{code},{name},通卡罗湖店,通卡羅湖店,{district},"Shop 3, Lo Wu Control Point",'
        f"罗湖管制站3号铺,羅湖管制站3號舖,{hours},{kind},Lo Wu,罗湖,羅湖,{latitude},{longitude}"
    )


def write(path: Path, *rows: str, header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def stores(sessions) -> dict[str, Store]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return {store.code: store for store in s.scalars(select(Store))}


def test_a_good_file_is_imported(cli, sessions, tmp_path: Path) -> None:
    path = write(
        tmp_path / "stores.csv",
        row(),
        row("ifc", "central and western", "mon-fri 09:00-21:00; sat 10:00-20:00", "mtr"),
    )
    result = cli("stores", "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "added 2, updated 0, unchanged 0"
    assert result.stderr == ""

    found = stores(sessions)
    lo_wu, ifc = found["lo-wu"], found["ifc"]
    assert lo_wu.names == {"en": "tongka Lo Wu", "zh-Hans": "通卡罗湖店", "zh-Hant": "通卡羅湖店"}
    assert lo_wu.addresses["en"] == "Shop 3, Lo Wu Control Point"
    assert (lo_wu.nearest_kind, lo_wu.nearest("zh-Hant")) == ("crossing", "羅湖")
    # Coordinates exactly as written, in micro-degrees.
    assert (lo_wu.latitude_e6, lo_wu.longitude_e6) == (22_528_100, 114_113_101)
    assert lo_wu.geo_uri() == "geo:22.528100,114.113101"
    assert lo_wu.hours["sun"] == [["06:30", "24:00"]] and lo_wu.active
    assert ifc.district == "Central and Western"  # the district's own spelling
    assert ifc.hours["fri"] == [["09:00", "21:00"]] and ifc.hours["sun"] == []


def test_a_bad_file_is_refused_whole_with_each_line_number(cli, sessions, tmp_path: Path) -> None:
    path = write(
        tmp_path / "stores.csv",
        row(),  # line 2: good, yet not imported
        row("mk", district="Mong Kok"),  # a neighbourhood, not a district
        row("apm", hours="mon-fri 11:00-24:00; fri 10:00-22:00"),
        row("far", latitude="122.5"),
        row("fine", latitude="22.1234567"),
        row("lo-wu"),  # the code again
        row("bus", kind="bus"),
        "short,row",
    )
    result = cli("stores", "import", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    errors = result.stderr.splitlines()
    assert errors[:-1] == [
        f"{path}:3: district: unknown district 'Mong Kok': one of Hong Kong's 18 (e.g. Yau Tsim "
        "Mong, North) or Shenzhen Luohu, Futian, Nanshan, Yantian",
        f"{path}:4: hours: fri given twice",
        f"{path}:5: latitude: Input should be less than or equal to 90",
        f"{path}:6: latitude: Decimal input should have no more than 6 decimal places",
        f"{path}:7: code lo-wu is on line 2 too",
        f"{path}:8: nearest_kind: Input should be 'mtr' or 'crossing'",
        f"{path}:9: name_zh_hans: Field required; name_zh_hant: Field required; "
        "district: Field required; address_en: Field required; address_zh_hans: Field required; "
        "address_zh_hant: Field required; hours: Field required; nearest_kind: Field required; "
        "nearest_en: Field required; nearest_zh_hans: Field required; nearest_zh_hant: Field "
        "required; latitude: Field required; longitude: Field required",
    ]
    assert errors[-1] == "refused: 7 bad row(s), no store changed"
    assert stores(sessions) == {}


def test_missing_or_unknown_columns_are_refused(cli, sessions, tmp_path: Path) -> None:
    header = HEADER.replace("address_en", "adress_en")
    result = cli("stores", "import", str(write(tmp_path / "s.csv", row(), header=header)))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        f"{tmp_path / 's.csv'}:1: missing columns: address_en",
        f"{tmp_path / 's.csv'}:1: unknown columns: adress_en",
    ]
    result = cli("stores", "import", str(write(tmp_path / "empty.csv")))
    assert result.exit_code == 1 and "no stores in the file" in result.stderr
    assert stores(sessions) == {}


def test_importing_again_updates_by_code_and_a_bad_file_changes_nothing(
    cli, sessions, tmp_path: Path
) -> None:
    first = write(tmp_path / "a.csv", row(), row("ifc", "Central and Western", kind="mtr"))
    assert cli("stores", "import", str(first)).exit_code == 0

    second = write(
        tmp_path / "b.csv",
        row(hours="daily 07:00-23:00", name="tongka Lo Wu Station"),
        row("ifc", "Central and Western", kind="mtr"),
        row("futian", "Shenzhen Futian", "daily 06:30-22:30"),
        header=HEADER,
    )
    result = cli("stores", "import", str(second))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "added 1, updated 1, unchanged 1"
    found = stores(sessions)
    assert found["lo-wu"].hours["mon"] == [["07:00", "23:00"]]
    assert found["lo-wu"].name("en") == "tongka Lo Wu Station"
    assert found["futian"].district == "Shenzhen Futian"

    # A store is closed by importing it with active=no; stores not in a file stay as they are.
    closing = write(
        tmp_path / "c.csv",
        row("ifc", "Central and Western", kind="mtr") + ",no",
        header=HEADER + ",active",
    )
    assert cli("stores", "import", str(closing)).stdout.strip() == "added 0, updated 1, unchanged 0"
    found = stores(sessions)
    assert not found["ifc"].active and found["lo-wu"].active and len(found) == 3

    bad = write(tmp_path / "d.csv", row(hours="daily 08:00-20:00"), row("x", district="Nowhere"))
    assert cli("stores", "import", str(bad)).exit_code == 1
    assert stores(sessions)["lo-wu"].hours["mon"] == [["07:00", "23:00"]]


def test_the_demo_has_stores_in_malls_near_mtr_and_at_both_crossings(sessions, settings) -> None:
    f.load_demo(sessions, settings)
    f.load_demo(sessions, settings)  # twice: nothing new
    found = stores(sessions)
    assert 8 <= len(found) <= 12
    kinds = {s.nearest_kind for s in found.values()}
    assert kinds == {"mtr", "crossing"}
    districts = {s.district for s in found.values()}
    assert {"Yau Tsim Mong", "Wan Chai", "North", "Shenzhen Luohu", "Shenzhen Futian"} <= districts
    assert districts <= set(service.DISTRICTS)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Store)) == len(found)
    assert STORES_CSV.read_text().count("\n") == len(found) + 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daily 10:00-22:00", {day: [["10:00", "22:00"]] for day in service.WEEKDAYS}),
        (
            "mon-fri 09:00-13:00,14:00-18:00; sun closed",
            {"mon": [["09:00", "13:00"], ["14:00", "18:00"]], "sat": [], "sun": []},
        ),
        (
            "fri-mon 18:00-02:00",
            {"fri": [["18:00", "02:00"]], "mon": [["18:00", "02:00"]], "tue": []},
        ),
        ("Sat,Sun 11:00–23:00", {"sat": [["11:00", "23:00"]], "fri": []}),
    ],
)
def test_opening_hours_are_read_from_a_short_form(text: str, expected: dict[str, list]) -> None:
    hours = service.parse_hours(text)
    assert list(hours) == list(service.WEEKDAYS)
    assert {day: hours[day] for day in expected} == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("mon 10:00-25:00", "'10:00-25:00' is not opening hours like 10:00-22:00"),
        ("mon 10:00-10:00", "is not opening hours"),
        ("monday 10:00-22:00", "'monday' is not a day"),
        ("mon 10:00-14:00,13:00-18:00", "overlap"),
        ("mon 18:00-02:00,20:00-23:00", "overlap"),
        ("mon closed", "open on no day"),
        ("daily 10:00-22:00; sun 11:00-20:00", "sun given twice"),
    ],
)
def test_opening_hours_that_make_no_sense_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        service.parse_hours(text)


HK = service.LOCAL_TIME


@pytest.mark.parametrize(
    ("hours", "local", "expected"),
    [
        # Wednesday 9 December 2026, Hong Kong time.
        ("daily 10:00-22:00", datetime(2026, 12, 9, 12, 0), (True, datetime(2026, 12, 9, 22, 0))),
        ("daily 10:00-22:00", datetime(2026, 12, 9, 22, 0), (False, datetime(2026, 12, 10, 10))),
        ("daily 06:30-24:00", datetime(2026, 12, 9, 23, 59), (True, datetime(2026, 12, 10, 0))),
        # Past midnight: Friday's night runs into Saturday.
        ("fri 20:00-02:00", datetime(2026, 12, 12, 1, 0), (True, datetime(2026, 12, 12, 2))),
        ("fri 20:00-02:00", datetime(2026, 12, 12, 3, 0), (False, datetime(2026, 12, 18, 20))),
        # Spans that meet are one: open through midnight until 02:00.
        (
            "fri 10:00-24:00; sat 00:00-02:00",
            datetime(2026, 12, 11, 23),
            (True, datetime(2026, 12, 12, 2)),
        ),
        ("daily 00:00-24:00", datetime(2026, 12, 9, 3, 0), (True, None)),
    ],
)
def test_open_or_closed_and_until_when(
    hours: str, local: datetime, expected: tuple[bool, datetime | None]
) -> None:
    now = local.replace(tzinfo=HK).astimezone(UTC)
    state = service.opening(service.parse_hours(hours), now)
    is_open, at = expected
    assert state == service.Opening(is_open, at.replace(tzinfo=HK) if at else None)
