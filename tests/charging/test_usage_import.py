"""`tongka usage import`: usage records from files, charged like online usage, once per record_id: on each backend.

Each test commits its work, so the `db_url` fixture's final `ledger verify` checks it.
"""

from __future__ import annotations

import csv
import gc
import io
import itertools
import json
import random
import threading
import tracemalloc
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from tests import factories as app_f
from tests.charging import calls
from tests.charging import factories as f
from tests.charging.factories import HK_PLMN, HK_RATE, MAINLAND_PLMN
from tests.ledger.factories import T0, transfer_count
from tongka.account.models import Line
from tongka.charging import service as charging
from tongka.charging import usage_files, usage_import
from tongka.charging.models import Network, UsageDay, UsageRecord
from tongka.charging.usage_files import ImportRefused, Rejected, parse_record
from tongka.ledger import buckets
from tongka.ledger.models import Transfer
from tongka.money import MB

HEADER = ["record_id", "imsi", "msisdn", "plmn", "start", "end", "bytes_up", "bytes_down"]
T0_DAY = date(2030, 1, 15)  # T0 is 08:00 UTC, 16:00 in Hong Kong
_imsis = itertools.count(1)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def row(
    record_id: str,
    line: Line | None = None,
    plmn: str = HK_PLMN,
    up: int = 0,
    down: int = 0,
    *,
    minutes: float = 60,
    imsi: str | None = None,
    msisdn: str | None = None,
    start: str | None = None,
) -> list[str]:
    """A CSV record: by the line's IMSI unless told otherwise, ending T0 + `minutes`, 10 minutes long."""
    if imsi is None and msisdn is None:
        assert line is not None and line.imsi
        imsi = line.imsi
    return [
        record_id,
        imsi or "",
        msisdn or "",
        plmn,
        start or at(minutes - 10),
        at(minutes),
        str(up),
        str(down),
    ]


def csv_file(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def subscriber(session, **zones: int) -> tuple[Line, dict[str, object]]:  # type: ignore[no-untyped-def]
    """A line with an IMSI and a bucket of `bytes` per zone (hk=, mainland=, both=), committed."""
    line = f.line(session)
    line.imsi = f"45400{next(_imsis):010d}"
    made = {zone: f.bucket(session, line, zone, amount) for zone, amount in zones.items()}
    session.commit()
    return line, made


def charges(session, record_id: str) -> list[tuple[int, int, str]]:  # type: ignore[no-untyped-def]
    """(debit account, amount, reason) of the ledger entries made for one record."""
    return [
        (t.debit_account_id, t.amount, t.reason)
        for t in session.scalars(
            select(Transfer)
            .where(Transfer.reference == f"usage_record:{record_id}")
            .order_by(Transfer.id)
        )
    ]


def usage_days(session, line: Line) -> dict[tuple[date, str, str], int]:  # type: ignore[no-untyped-def]
    rows = session.scalars(select(UsageDay).where(UsageDay.line_id == line.id)).all()
    return {(u.day, u.zone, u.plmn): u.bytes for u in rows}


def imported(session) -> dict[str, UsageRecord]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return {r.record_id: r for r in session.scalars(select(UsageRecord))}


def run(cli, session, *args: str):  # type: ignore[no-untyped-def]
    """`tongka usage import ...`, once the test's session holds no transaction (SQLite has one writer at a time)."""
    session.rollback()
    return cli("usage", "import", *args)


def read_rejects(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f_:
        return list(csv.DictReader(f_))


# --- importing ----------------------------------------------------------------------------


def test_csv_records_draw_the_buckets_of_their_zone_and_count_as_usage(
    cli, session, tmp_path
) -> None:
    line, b = subscriber(session, hk=100 * MB, mainland=100 * MB, both=50 * MB)
    path = csv_file(
        tmp_path / "usage.csv",
        [
            row("r1", line, HK_PLMN, 2 * MB, 8 * MB),
            row("r2", msisdn=line.hk_number, plmn=MAINLAND_PLMN, up=5 * MB, down=15 * MB),
            row("r3", line, "454-03", 0, 5 * MB, minutes=9 * 60),  # 01:00 on the 16th in Hong Kong
        ],
    )
    result = run(cli, session, str(path))

    assert result.exit_code == 0, result.output
    assert "read 3 records" in result.output
    assert "imported 3, already imported 0, rejected 0" in result.output
    assert (
        "charged: 36,700,160 bytes from buckets (35 MB), 0 bytes overage (0 B), 0 bytes owed (0 B)"
        in result.output
    )
    session.rollback()
    assert [f.remaining(session, b[z]) for z in ("hk", "mainland", "both")] == [
        85 * MB,
        80 * MB,
        50 * MB,
    ]
    assert usage_days(session, line) == {
        (T0_DAY, "hk", HK_PLMN): 10 * MB,
        (T0_DAY, "mainland", MAINLAND_PLMN): 20 * MB,
        (T0_DAY + timedelta(days=1), "hk", "454-03"): 5 * MB,
    }
    # The same ledger entries online charging makes for usage beyond a grant, named after the record.
    assert charges(session, "r1") == [(b["hk"].ledger_account_id, 10 * MB, "usage_beyond_grant")]
    r1 = imported(session)["r1"]
    assert (r1.line_id, r1.plmn, r1.zone, r1.bytes_up, r1.bytes_down) == (
        line.id,
        HK_PLMN,
        "hk",
        2 * MB,
        8 * MB,
    )
    assert (r1.from_buckets, r1.overage_bytes, r1.overage_amount, r1.owed_bytes) == (
        10 * MB,
        0,
        0,
        0,
    )
    assert (r1.started_at, r1.ended_at, r1.line_number, r1.imported_at) == (
        T0 + timedelta(minutes=50),
        T0 + timedelta(minutes=60),
        2,
        T0,
    )
    assert (tmp_path / "usage.rejects.csv").read_text().splitlines() == [
        ",".join(HEADER) + ",reject_line,reject_reason,reject_message"
    ]


def test_jsonl_records_by_msisdn_and_compact_plmn_show_in_the_usage_api(
    cli, client, session, tmp_path
) -> None:
    account = app_f.register(client)
    headers = app_f.login(client, account["username"])
    line, b = subscriber(session, hk=100 * MB, mainland=100 * MB)
    line.account_id = uuid.UUID(account["id"])
    session.commit()
    digits = line.hk_number.removeprefix("+")
    records = [
        {
            "record_id": 1001,
            "msisdn": digits,
            "plmn": "45400",
            "start": at(0),
            "end": at(10),
            "bytes_up": 1 * MB,
            "bytes_down": 3 * MB,
        },
        {
            "record_id": "1002",
            "msisdn": "+" + digits,
            "plmn": "46000",
            "start": at(20),
            "end": at(30),
            "bytes_up": str(2 * MB),
            "bytes_down": 0,
            "cell": "ignored",
        },
    ]
    path = tmp_path / "usage.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    result = run(cli, session, str(path))

    assert result.exit_code == 0, result.output
    assert "imported 2, already imported 0, rejected 0" in result.output
    body = client.get(f"/api/v1/lines/{line.id}/usage", headers=headers).json()
    assert body["total_bytes"] == 6 * MB
    assert body["days"][0]["zones"] == {"mainland": 2 * MB, "hk": 4 * MB}
    assert set(imported(session)) == {"1001", "1002"}
    assert (f.remaining(session, b["hk"]), f.remaining(session, b["mainland"])) == (
        96 * MB,
        98 * MB,
    )
    assert (tmp_path / "usage.rejects.jsonl").read_text() == ""


def test_usage_beyond_the_buckets_is_owed(cli, session, tmp_path) -> None:
    line, b = subscriber(session, hk=10 * MB)
    path = csv_file(
        tmp_path / "usage.csv",
        [
            row("r1", line, HK_PLMN, 0, 6 * MB, minutes=10),
            row("r2", line, HK_PLMN, 1 * MB, 6 * MB, minutes=20),  # 4 MB left in the bucket
            row("r3", line, MAINLAND_PLMN, 0, 2 * MB, minutes=30),  # no mainland bucket at all
        ],
    )
    result = run(cli, session, str(path))

    assert result.exit_code == 0, result.output
    assert "0 bytes overage (0 B), 5,242,880 bytes owed (5 MB)" in result.output
    session.rollback()
    assert f.remaining(session, b["hk"]) == 0
    assert (buckets.owed(session, line.id, "hk"), buckets.owed(session, line.id, "mainland")) == (
        3 * MB,
        2 * MB,
    )
    records = imported(session)
    assert [(records[r].from_buckets, records[r].owed_bytes) for r in ("r1", "r2", "r3")] == [
        (6 * MB, 0),
        (4 * MB, 3 * MB),
        (0, 2 * MB),
    ]
    assert usage_days(session, line) == {
        (T0_DAY, "hk", HK_PLMN): 13 * MB,
        (T0_DAY, "mainland", MAINLAND_PLMN): 2 * MB,
    }


def test_overage_pays_beyond_the_buckets_when_the_owner_turned_it_on(
    cli, session, tmp_path
) -> None:
    line, _owner = f.overage_line(session, wallet=10_000, cap=5_000)
    line.imsi = f"45400{next(_imsis):010d}"
    bucket = f.bucket(session, line, "hk", 1 * MB)
    session.commit()
    path = csv_file(tmp_path / "usage.csv", [row("r1", line, HK_PLMN, 1 * MB, 2 * MB)])
    result = run(cli, session, str(path))

    assert result.exit_code == 0, result.output
    assert f"2,097,152 bytes overage (2 MB, HKD {2 * HK_RATE} minor units)" in result.output
    r1 = imported(session)["r1"]
    assert (
        r1.from_buckets,
        r1.overage_bytes,
        r1.overage_amount,
        r1.overage_currency,
        r1.owed_bytes,
    ) == (
        1 * MB,
        2 * MB,
        2 * HK_RATE,
        "HKD",
        0,
    )
    assert f.remaining(session, bucket) == 0
    assert [reason for _debit, _amount, reason in charges(session, "r1")] == [
        "usage_beyond_grant",
        "overage",
    ]


def test_a_zero_byte_record_is_kept_and_charges_nothing(cli, session, tmp_path) -> None:
    line, b = subscriber(session, hk=10 * MB)
    before = transfer_count(session)
    result = run(
        cli, session, str(csv_file(tmp_path / "usage.csv", [row("r0", line, HK_PLMN, 0, 0)]))
    )

    assert result.exit_code == 0, result.output
    assert "imported 1, already imported 0, rejected 0" in result.output
    r0 = imported(session)["r0"]
    assert (r0.from_buckets, r0.overage_bytes, r0.owed_bytes) == (0, 0, 0)
    assert transfer_count(session) == before
    assert usage_days(session, line) == {}
    assert f.remaining(session, b["hk"]) == 10 * MB


# --- idempotency --------------------------------------------------------------------------


def test_importing_a_file_again_charges_nothing_twice(cli, session, tmp_path) -> None:
    line, b = subscriber(session, hk=10 * MB)
    path = csv_file(
        tmp_path / "usage.csv",
        [
            row("r1", line, HK_PLMN, 0, 4 * MB),
            row("r2", line, HK_PLMN, 0, 4 * MB),
            row("r3", line, HK_PLMN, 0, 4 * MB),
        ],
    )
    assert run(cli, session, str(path)).exit_code == 0
    session.rollback()
    after_first = (
        transfer_count(session),
        f.remaining(session, b["hk"]),
        buckets.owed(session, line.id, "hk"),
        usage_days(session, line),
    )
    assert after_first[1:] == (0, 2 * MB, {(T0_DAY, "hk", HK_PLMN): 12 * MB})

    again = run(cli, session, str(path))
    assert again.exit_code == 0, again.output
    assert "imported 0, already imported 3, rejected 0" in again.output
    assert (
        "charged: 0 bytes from buckets (0 B), 0 bytes overage (0 B), 0 bytes owed (0 B)"
        in again.output
    )
    session.rollback()
    assert (
        transfer_count(session),
        f.remaining(session, b["hk"]),
        buckets.owed(session, line.id, "hk"),
        usage_days(session, line),
    ) == after_first


def test_a_crash_between_batches_loses_nothing_and_repeats_nothing(
    cli, session, tmp_path, monkeypatch
) -> None:
    line, b = subscriber(session, hk=100 * MB)
    rows = [row(f"r{n}", line, HK_PLMN, 0, (n + 1) * MB, minutes=n) for n in range(10)]
    path = csv_file(tmp_path / "usage.csv", rows)
    add_usage, calls = usage_import._add_usage, itertools.count(1)

    def crashing(session_, usage):  # type: ignore[no-untyped-def]
        if next(calls) == 3:  # the third batch dies after charging its records, before its commit
            raise RuntimeError("the power went out")
        add_usage(session_, usage)

    monkeypatch.setattr(usage_import, "_add_usage", crashing)
    with pytest.raises(RuntimeError, match="power"):
        run(cli, session, str(path), "--batch", "3")
    assert sorted(imported(session)) == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert [charges(session, f"r{n}") for n in (6, 7, 8, 9)] == [[], [], [], []]
    assert f.remaining(session, b["hk"]) == (100 - 21) * MB

    monkeypatch.setattr(usage_import, "_add_usage", add_usage)
    result = run(cli, session, str(path), "--batch", "3")
    assert result.exit_code == 0, result.output
    assert "imported 4, already imported 6, rejected 0" in result.output
    session.rollback()
    for n in range(10):
        assert [amount for _debit, amount, _reason in charges(session, f"r{n}")] == [(n + 1) * MB]
    assert f.remaining(session, b["hk"]) == (100 - 55) * MB
    assert usage_days(session, line) == {(T0_DAY, "hk", HK_PLMN): 55 * MB}


def test_two_imports_of_one_file_at_once_charge_each_record_once(
    sessions, session, tmp_path
) -> None:
    line, b = subscriber(session, hk=1000 * MB)
    rows = [row(f"r{n}", line, HK_PLMN, 0, 1 * MB, minutes=n) for n in range(120)]
    data = csv_file(tmp_path / "usage.csv", rows).read_bytes()
    summaries: list[usage_import.ImportSummary] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            summaries.append(
                usage_import.import_usage(
                    sessions, io.BytesIO(data), "csv", io.StringIO(), batch_size=10
                )
            )
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures and len(summaries) == 2
    assert sorted((s.imported + s.already_imported, s.rejected_total) for s in summaries) == [
        (120, 0),
        (120, 0),
    ]
    assert sum(s.imported for s in summaries) == 120
    session.rollback()
    assert f.remaining(session, b["hk"]) == 880 * MB
    assert all(len(charges(session, f"r{n}")) == 1 for n in range(120))


# --- rejects ------------------------------------------------------------------------------


def test_rejected_records_go_to_the_reject_file_with_their_line_and_reason(
    cli, session, tmp_path
) -> None:
    line, b = subscriber(session, hk=100 * MB)
    suspended, _ = subscriber(session, hk=100 * MB)
    suspended.status = "suspended"
    session.execute(update(Network).where(Network.plmn == "454-03").values(active=False))
    session.commit()
    rows = [
        row("r1", line, HK_PLMN, 0, 1 * MB),  # line 2: imported
        [*row("bad", line, HK_PLMN, 0, 1 * MB)[:6], "-5", "0"],  # 3: malformed
        row("who", imsi="454009999999999", up=1),  # 4: unknown subscriber
        row("where", line, "310-260", 0, 1),  # 5: unknown network
        row("off", line, "454-03", 0, 1),  # 6: network not served
        row("back", line, HK_PLMN, 0, 1, start=at(120)),  # 7: end before start
        row("idle", suspended, HK_PLMN, 0, 1),  # 8: line not active
        row("r1", line, HK_PLMN, 0, 1 * MB),  # 9: r1 again, in another batch
        row("r2", line, HK_PLMN, 0, 2 * MB),  # 10: imported
        row("r3", line, HK_PLMN, 0, 3 * MB),  # 11: imported
        row("r3", line, HK_PLMN, 0, 5 * MB),  # 12: r3 again, in the same batch
    ]
    result = run(cli, session, str(csv_file(tmp_path / "usage.csv", rows)), "--batch", "3")

    assert result.exit_code == 1, result.output
    assert "imported 3, already imported 0, rejected 8" in result.output
    assert (
        "rejected: duplicate_record 2, end_before_start 1, line_not_active 1, malformed 1, network_not_served 1, "
        "unknown_network 1, unknown_subscriber 1"
    ) in result.output
    rejects = read_rejects(tmp_path / "usage.rejects.csv")
    assert [(r["reject_line"], r["record_id"], r["reject_reason"]) for r in rejects] == [
        ("3", "bad", "malformed"),
        ("4", "who", "unknown_subscriber"),
        ("5", "where", "unknown_network"),
        ("6", "off", "network_not_served"),
        ("7", "back", "end_before_start"),
        ("8", "idle", "line_not_active"),
        ("9", "r1", "duplicate_record"),
        ("12", "r3", "duplicate_record"),
    ]
    messages = {r["reject_line"]: r["reject_message"] for r in rejects}
    assert messages["3"] == "bytes_up must be a whole number of bytes, 0 or more"
    assert messages["4"] == "no line has IMSI 454009999999999"
    assert messages["5"] == "The network 310-260 is not known to tongka."
    assert messages["9"] == "record_id r1 is also on line 2"
    assert messages["12"] == "record_id r3 is also on line 11"
    # The record as it was read; a cell a spreadsheet would run as a formula with a leading quote.
    assert rejects[0]["bytes_up"] == "'-5" and rejects[2]["plmn"] == "310-260"
    assert set(imported(session)) == {"r1", "r2", "r3"}
    assert [amount for _d, amount, _r in charges(session, "r3")] == [3 * MB]
    assert f.remaining(session, b["hk"]) == 94 * MB


def test_a_record_refused_while_charging_is_rejected_and_its_batch_kept(
    cli, session, tmp_path, monkeypatch
) -> None:
    line, b = subscriber(session, hk=10 * MB, both=10 * MB)
    charge = usage_import._charge

    def refusing(session_, locked, record, line_, zone):  # type: ignore[no-untyped-def]
        outcome = charge(
            session_, locked, record, line_, zone
        )  # its transfers are made, then undone
        if record.record_id == "r2":
            raise charging.LineNotActive()
        return outcome

    monkeypatch.setattr(usage_import, "_charge", refusing)
    path = csv_file(
        tmp_path / "usage.csv",
        [
            row("r1", line, HK_PLMN, 0, 6 * MB, minutes=1),
            row("r2", line, HK_PLMN, 0, 6 * MB, minutes=2),
            row("r3", line, HK_PLMN, 0, 6 * MB, minutes=3),
        ],
    )
    result = run(cli, session, str(path))

    assert result.exit_code == 1, result.output
    assert "imported 2, already imported 0, rejected 1" in result.output
    assert [
        (r["record_id"], r["reject_reason"], r["reject_message"])
        for r in read_rejects(tmp_path / "usage.rejects.csv")
    ] == [
        ("r2", "line_not_active", "This line is not active."),
    ]
    assert (charges(session, "r2"), set(imported(session))) == ([], {"r1", "r3"})
    # r3 drew on what r2's undone transfers had left: the hk bucket's last 4 MB, then 2 MB of `both`.
    assert [amount for _d, amount, _r in charges(session, "r3")] == [4 * MB, 2 * MB]
    assert (f.remaining(session, b["hk"]), f.remaining(session, b["both"])) == (0, 8 * MB)
    assert usage_days(session, line) == {(T0_DAY, "hk", HK_PLMN): 12 * MB}


def test_a_corrected_reject_file_imports_as_it_is(cli, session, tmp_path) -> None:
    line, b = subscriber(session, hk=100 * MB)
    line.status = "suspended"
    session.commit()
    path = csv_file(
        tmp_path / "usage.csv",
        [row("r1", line, HK_PLMN, 0, 1 * MB), row("r2", line, HK_PLMN, 0, 2 * MB)],
    )
    assert run(cli, session, str(path)).exit_code == 1
    session.execute(update(Line).where(Line.id == line.id).values(status="active"))
    session.commit()

    result = run(cli, session, str(tmp_path / "usage.rejects.csv"))  # its extra columns are ignored
    assert result.exit_code == 0, result.output
    assert "imported 2, already imported 0, rejected 0" in result.output
    assert f.remaining(session, b["hk"]) == 97 * MB


def test_jsonl_rejects_keep_the_record_and_say_why(cli, session, tmp_path) -> None:
    line, _b = subscriber(session, hk=100 * MB)
    good = {
        "record_id": "ok",
        "imsi": line.imsi,
        "plmn": HK_PLMN,
        "start": at(0),
        "end": at(5),
        "bytes_up": 1,
        "bytes_down": 2,
    }
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps([1, 2]),
        json.dumps({**good, "record_id": "both", "msisdn": line.hk_number}),
        json.dumps({**good, "record_id": "naive", "end": "2030-01-15T09:00:00"}),
    ]
    path = tmp_path / "cdr.ndjson"
    path.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "out" / "rejected.jsonl"
    rejects.parent.mkdir()
    result = run(cli, session, str(path), "--rejects", str(rejects))

    assert result.exit_code == 1, result.output
    assert f"rejected records: {rejects}" in result.output
    got = [json.loads(text) for text in rejects.read_text().splitlines()]
    assert [(g["reject_line"], g["reject_reason"]) for g in got] == [
        (2, "malformed"),
        (3, "malformed"),
        (4, "malformed"),
        (5, "malformed"),
    ]
    assert got[0]["raw"] == "{not json" and got[0]["reject_message"].startswith("not JSON")
    assert got[1]["reject_message"] == "not a JSON object"
    assert (got[2]["record_id"], got[2]["reject_message"]) == (
        "both",
        "give exactly one of imsi and msisdn",
    )
    assert got[3]["end"] == "2030-01-15T09:00:00" and "offset" in got[3]["reject_message"]
    assert set(imported(session)) == {"ok"}


def test_a_file_that_cannot_be_imported_is_refused_and_nothing_is_written(
    cli, session, tmp_path
) -> None:
    (tmp_path / "usage.txt").write_text("record_id\n")
    result = run(cli, session, str(tmp_path / "usage.txt"))
    assert (result.exit_code, "give --format csv or jsonl" in result.output) == (2, True)

    (tmp_path / "usage.csv").write_text("record_id,imsi,plmn,start,bytes_up\n")
    result = run(cli, session, str(tmp_path / "usage.csv"))
    assert result.exit_code == 2
    assert "refused: missing columns: end, bytes_down" in result.output
    assert not (tmp_path / "usage.rejects.csv").exists()

    result = run(cli, session, str(tmp_path / "usage.txt"), "--format", "csv", "--batch", "0")
    assert (result.exit_code, "the batch size is 1 to 10,000 records" in result.output) == (2, True)


# --- streaming ----------------------------------------------------------------------------


def _generated(path: Path, lines: list[Line], count: int) -> Path:
    """`count` records: one in ten charged, the others zero-byte or rejected (the same path, little ledger work)."""
    rng = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for n in range(count):
            line = rng.choice(lines)
            kind = n % 10
            plmn = "310-260" if kind == 1 else rng.choice((HK_PLMN, MAINLAND_PLMN))
            writer.writerow(
                row(
                    f"{path.stem}-{n:08d}", line, plmn, 0, 1000 if kind == 0 else 0, minutes=n / 100
                )
            )
    return path


def _peak_while(run) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(peak, still held afterwards) bytes allocated by Python while `run()` runs."""
    gc.collect()
    tracemalloc.start()
    try:
        run()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, current


def test_memory_stays_flat_whatever_the_file_size(sessions, session, tmp_path) -> None:
    lines = [subscriber(session, hk=100 * MB, mainland=100 * MB)[0] for _ in range(20)]
    small, big = (
        _generated(tmp_path / "small.csv", lines, 500),
        _generated(tmp_path / "big.csv", lines, 20_000),
    )

    def importing(path: Path):  # type: ignore[no-untyped-def]
        def go() -> None:
            with path.open("rb") as source:
                summary = usage_import.import_usage(
                    sessions, source, "csv", io.StringIO(), batch_size=500
                )
            assert (summary.read, summary.rejected[charging.UnknownNetwork.code]) == (
                summary.imported + summary.rejected_total,
                summary.read // 10,
            )

        return go

    def loading_everything() -> None:  # what an import that read the file first would hold at least
        with big.open("rb") as source:
            records = list(usage_files.read_items(source, "csv")[1])
        assert len(records) == 20_000

    importing(small)()  # first use fills SQLAlchemy's statement caches: not the file's doing
    peak, held = _peak_while(importing(big))
    everything, _ = _peak_while(loading_everything)

    assert peak < everything / 3, (peak, everything)
    assert held < 512 * 1024, held  # nothing of the file is kept once it is done
    session.rollback()
    assert session.scalar(select(func.count()).select_from(UsageRecord)) == 450 + 18_000


def test_an_overlong_line_is_rejected_without_being_held(tmp_path) -> None:
    good = ",".join(["r1", "454001234567890", "", "454-00", at(0), at(5), "1", "2"])
    data = (
        ",".join(HEADER) + "\n" + "x" * (3 * usage_files.MAX_LINE_BYTES) + "\n" + good + "\n"
    ).encode()
    _lines, items = usage_files.read_items(io.BytesIO(data), "csv")
    got = list(items)
    assert [(i.line_number, i.rejected.reason if i.rejected else None) for i in got] == [
        (2, "malformed"),
        (3, None),
    ]
    assert got[1].record is not None and got[1].record.record_id == "r1"


# --- what a record may say ----------------------------------------------------------------

GOOD = {
    "record_id": "a-1",
    "imsi": "454001234567890",
    "plmn": "454-00",
    "start": "2030-01-15T16:00:00+08:00",
    "end": "2030-01-15T08:30:00Z",
    "bytes_up": "10",
    "bytes_down": 20,
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, ("a-1", "454001234567890", None, "454-00", 10, 20)),
        ({"imsi": None, "msisdn": "85291234567"}, ("a-1", None, "+85291234567", "454-00", 10, 20)),
        (
            {"imsi": "", "msisdn": "+8613912345678"},
            ("a-1", None, "+8613912345678", "454-00", 10, 20),
        ),
        ({"plmn": "45400"}, ("a-1", "454001234567890", None, "454-00", 10, 20)),
        ({"plmn": "310260"}, ("a-1", "454001234567890", None, "310-260", 10, 20)),
        (
            {"record_id": 42, "imsi": 454001234567890},
            ("42", "454001234567890", None, "454-00", 10, 20),
        ),
    ],
)
def test_what_a_record_may_say(changes, expected) -> None:  # type: ignore[no-untyped-def]
    record = parse_record({**GOOD, **changes})
    assert (
        record.record_id,
        record.imsi,
        record.msisdn,
        record.plmn,
        record.bytes_up,
        record.bytes_down,
    ) == expected
    assert record.start == datetime(2030, 1, 15, 8, 0, tzinfo=UTC) and record.used_bytes == 30


@pytest.mark.parametrize(
    ("changes", "reason", "message"),
    [
        ({"record_id": ""}, "malformed", "record_id must be 1 to 64 printable characters"),
        ({"record_id": "x" * 65}, "malformed", "record_id must be 1 to 64 printable characters"),
        ({"record_id": True}, "malformed", "record_id must be text"),
        ({"msisdn": "85291234567"}, "malformed", "give exactly one of imsi and msisdn"),
        ({"imsi": None}, "malformed", "give exactly one of imsi and msisdn"),
        ({"imsi": "45400123456789012"}, "malformed", "imsi must be 6 to 15 digits"),
        ({"imsi": "４５４００１２３"}, "malformed", "imsi must be 6 to 15 digits"),
        (
            {"imsi": None, "msisdn": "+852-9123"},
            "malformed",
            "msisdn must be an E.164 number: 7 to 15 digits, with or without +",
        ),
        ({"plmn": "454-0"}, "malformed", "plmn must be MCC-MNC (454-00) or MCCMNC (45400)"),
        ({"plmn": "4540"}, "malformed", "plmn must be MCC-MNC (454-00) or MCCMNC (45400)"),
        (
            {"start": "2030-01-15 08:00"},
            "malformed",
            "start must be an ISO 8601 date and time with its offset",
        ),
        ({"end": 1894003200}, "malformed", "end must be an ISO 8601 date and time with its offset"),
        ({"bytes_up": "1.5"}, "malformed", "bytes_up must be a whole number of bytes, 0 or more"),
        ({"bytes_down": -1}, "malformed", "bytes_down must be a whole number of bytes, 0 or more"),
        ({"bytes_down": 2.0}, "malformed", "bytes_down must be a whole number of bytes, 0 or more"),
        (
            {"bytes_down": 2**50 + 1},
            "malformed",
            "bytes_down is more than 1,125,899,906,842,624 bytes",
        ),
        ({"end": "2030-01-15T07:59:59Z"}, "end_before_start", "end is before start"),
    ],
)
def test_what_a_record_may_not_say(changes, reason, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Rejected) as refused:
        parse_record({**GOOD, **changes})
    assert refused.value.reason == reason
    assert refused.value.message.startswith(message)


def test_the_format_comes_from_the_extension_unless_told() -> None:
    assert [
        usage_files.format_of(Path(p), None) for p in ("a.csv", "a.CSV", "a.jsonl", "a.ndjson")
    ] == [
        "csv",
        "csv",
        "jsonl",
        "jsonl",
    ]
    assert usage_files.format_of(Path("a.txt"), "jsonl") == "jsonl"
    assert usage_files.rejects_path(Path("/x/usage.2030-01.csv"), "csv") == Path(
        "/x/usage.2030-01.rejects.csv"
    )
    with pytest.raises(ImportRefused):
        usage_files.format_of(Path("a.csv"), "xml")


# --- the bucket fast path -----------------------------------------------------------------


def test_usage_the_buckets_cover_is_drawn_as_charge_usage_draws_it(session) -> None:
    """The import takes covered usage from the buckets it loaded and locked; charge_usage would take the same."""
    rng = random.Random(5)
    covered = 0
    for _ in range(40):
        line = f.line(session)
        for _b in range(
            rng.randint(2, 5)
        ):  # few distinct expiries, so ties between zones are common
            f.bucket(
                session,
                line,
                rng.choice(("hk", "mainland", "both")),
                rng.randint(1, 10) * MB,
                days=rng.choice((2, 2, 5)),
                valid_from=T0 - timedelta(days=rng.choice((0, 1, 1, 3))),
            )
        zone = rng.choice(("hk", "mainland"))
        when = T0 + timedelta(hours=rng.randint(0, 30))
        amount = rng.randint(1, 25) * MB
        locked = usage_import._Locked.lock(session, [(line, when)])
        plan = locked.draws(line.id, zone, when, amount)
        with session.begin_nested() as savepoint:
            excess = calls.charge_usage(session, line, zone, amount, when, reference="parity")
            made = [
                (t.debit_account_id, t.amount)
                for t in session.scalars(
                    select(Transfer).where(Transfer.reference == "parity").order_by(Transfer.id)
                )
            ]
            savepoint.rollback()
        if plan is None:
            assert excess.owed_bytes > 0
        else:
            covered += 1
            assert excess.from_buckets == amount
            assert made == [(bucket.account.id, take) for bucket, take in plan]
    assert 10 <= covered <= 30  # enough cases of each kind to mean something
    session.commit()
