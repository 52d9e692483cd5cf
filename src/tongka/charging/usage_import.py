"""`tongka usage import FILE`: usage records from partner networks, charged like online usage.

Each record (read by `usage_files.py`) is charged at its `end` as `charge_usage` charges
usage no grant covered: from the line's buckets valid then in the network's zone, then
overage if the owner turned it on, and the rest is owed; and it is added to the line's
usage of that Hong Kong day, zone and network.

Idempotent on `record_id`: each imported record is a row of `usage_records`, written in
the same transaction as its charge, so a record met again in a later run is skipped
(`already_imported`) and a crash between two batches loses nothing and repeats nothing.
A `record_id` met twice in one run is rejected the second time (`duplicate_record`); one
whose first occurrence was rejected is not remembered (that would cost memory per
record), so a later occurrence is judged on its own.

One transaction per `batch_size` records read (this job commits its batches itself). Per
batch: two queries for the lines; the ledger accounts the batch may touch locked at once
in ascending id (online charging locks in the same order: no deadlock) into one ledger batch
(`ledger.batch.LedgerBatch`); one query for the record ids already imported; each record
charged; the ledger's transfers written; the day's usage added once per line, day, zone and
network; the rows inserted in one statement. Usage the line's buckets cover is drawn from the
buckets loaded for the batch (`ledger.buckets.draw`, as `charge_usage` draws: a test checks
they agree), in memory; anything beyond the buckets is charged by `engine.ChargingBatch.
charge_usage` in the same ledger batch (overage, owed). A record refused while charging (a
`TongkaError`) rolls back its batch, which is then done again with a savepoint per record,
each in a ledger batch of its own, so only that record is rejected.

A batch holds the row locks of the buckets (and wallets) of its lines until it commits:
online charging of those lines waits up to that long (1 to 3 s at 1,000 records on the
bench machine; `--batch` makes it shorter).
Operator accounts such as `data_used` are never locked, so other lines do not wait.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from sqlalchemy import insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tongka import clock
from tongka.account.models import Line
from tongka.charging import engine
from tongka.charging import service as charging
from tongka.charging.engine import USAGE_BEYOND_GRANT, USED, ExcessCharge
from tongka.charging.models import LineOverage, UsageDay, UsageRecord
from tongka.charging.usage_files import (
    ImportRefused,
    Item,
    Record,
    Rejected,
    RejectWriter,
    format_of,
    read_items,
    rejects_path,
)
from tongka.db import add_rows, new_id
from tongka.errors import TongkaError
from tongka.ledger import buckets as ledger_buckets
from tongka.ledger.batch import Account, LedgerBatch
from tongka.ledger.buckets import LineBucket, counts_in, draw
from tongka.money import format_bytes
from tongka.wallet.models import Wallet

DEFAULT_BATCH = 1_000
MAX_BATCH = 10_000  # keeps each batch's IN (...) lists within every backend's parameter limit

# Reasons a record is rejected here (besides the file's own: usage_files.MALFORMED, END_BEFORE_START).
DUPLICATE = "duplicate_record"
UNKNOWN_SUBSCRIBER = "unknown_subscriber"
LINE_NOT_ACTIVE = charging.LineNotActive.code


@dataclass
class ImportSummary:
    read: int = 0
    imported: int = 0
    already_imported: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by reason
    from_buckets: int = 0
    overage_bytes: int = 0
    overage_amount: Counter[str] = field(default_factory=Counter)  # minor units, by currency
    owed_bytes: int = 0
    seconds: float = 0.0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def records_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> list[str]:
        """The summary printed at the end, for people."""
        lines = [
            f"read {self.read:,} records in {self.seconds:.1f} s ({self.records_per_second:,.0f} records/s)",
            f"imported {self.imported:,}, already imported {self.already_imported:,}, rejected {self.rejected_total:,}",
        ]
        if self.rejected:
            lines.append(
                "rejected: "
                + ", ".join(f"{reason} {n:,}" for reason, n in sorted(self.rejected.items()))
            )
        money = ", ".join(
            f"{currency} {amount:,} minor units"
            for currency, amount in sorted(self.overage_amount.items())
        )
        lines.append(
            f"charged: {self.from_buckets:,} bytes from buckets ({format_bytes(self.from_buckets)}), "
            f"{self.overage_bytes:,} bytes overage ({format_bytes(self.overage_bytes)}{', ' + money if money else ''}), "
            f"{self.owed_bytes:,} bytes owed ({format_bytes(self.owed_bytes)})"
        )
        return lines


# --- importing ----------------------------------------------------------------------------


_ALREADY = "already_imported"
# What became of a record: charged (how), rejected (why), or _ALREADY.
RecordOutcome = ExcessCharge | Rejected | str


class _Networks:
    """The zone of each PLMN, asked of the registry once per import (`charging.network_for`)."""

    def __init__(self) -> None:
        self.known: dict[str, str | tuple[str, str]] = {}  # the zone, or why the network is refused

    def zone(self, session: Session, plmn: str) -> str:
        if plmn not in self.known:
            try:
                self.known[plmn] = charging.network_for(session, plmn).zone
            except (charging.UnknownNetwork, charging.NetworkNotServed) as e:
                self.known[plmn] = (e.code, str(e))
        found = self.known[plmn]
        if isinstance(found, tuple):
            raise Rejected(
                *found
            )  # a new one each time: raising one again would grow its traceback
        return found


def import_usage(
    sessions: sessionmaker[Session],
    source: BinaryIO,
    fmt: str,
    rejects: IO[str],
    *,
    batch_size: int = DEFAULT_BATCH,
    on_batch: Callable[[int, ImportSummary], None] | None = None,
) -> ImportSummary:
    """Import the usage records of `source` (csv or jsonl), one transaction per `batch_size` records.

    Rejected records are written to `rejects`. `on_batch(bytes read, summary)` is called
    after each committed batch. Owns its transactions: it commits each batch itself.
    """
    _check_batch(batch_size)
    started = time.perf_counter()
    lines, items = read_items(source, fmt)
    writer = RejectWriter(rejects, fmt)
    summary = ImportSummary()
    import_id, networks = uuid.uuid4(), _Networks()
    batch: list[Item] = []

    def flush() -> None:
        outcomes = _import_batch(sessions, batch, import_id, networks)
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Rejected):
                summary.rejected[outcome.reason] += 1
                writer.write(item, outcome)
            elif isinstance(outcome, ExcessCharge):
                summary.imported += 1
                summary.from_buckets += outcome.from_buckets
                summary.overage_bytes += outcome.overage_bytes
                summary.owed_bytes += outcome.owed_bytes
                if outcome.overage_currency:
                    summary.overage_amount[outcome.overage_currency] += outcome.overage_amount
            else:
                summary.already_imported += 1
        rejects.flush()
        batch.clear()
        summary.seconds = time.perf_counter() - started
        if on_batch:
            on_batch(lines.position, summary)

    for item in items:
        summary.read += 1
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    flush()
    return summary


def _check_batch(batch_size: int) -> None:
    if not 1 <= batch_size <= MAX_BATCH:
        raise ImportRefused(f"the batch size is 1 to {MAX_BATCH:,} records")


def _import_batch(
    sessions: sessionmaker[Session], batch: list[Item], import_id: uuid.UUID, networks: _Networks
) -> list[RecordOutcome]:
    """Charge one batch in one transaction, committed here; the outcome of each item, in order."""
    if all(item.rejected for item in batch):
        return [item.rejected for item in batch]  # type: ignore[misc]
    careful = False
    for attempt in range(3):
        # Not db.transaction(): a refusal that asks to be committed anyway must not commit half a batch.
        with sessions() as session:  # closing it uncommitted rolls back
            try:
                outcomes = _charge_batch(session, batch, import_id, networks, careful=careful)
                session.commit()
                return outcomes
            except TongkaError:
                if careful:
                    raise
                careful = True  # again, with a savepoint per record, to reject only the one refused
            except IntegrityError:
                # Another import committed some of these records first (their primary key): done
                # again, they are found already imported.
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


def _judge(
    record: Record,
    line: Line | None,
    existing: dict[str, tuple[uuid.UUID, int]],
    accepted: dict[str, int],
    import_id: uuid.UUID,
) -> str | None:
    """_ALREADY, or None for a record to look at further; raises `Rejected`."""
    if record.record_id in existing:
        earlier_import, line_number = existing[record.record_id]
        if earlier_import != import_id:
            return _ALREADY
        raise Rejected(DUPLICATE, f"record_id {record.record_id} is also on line {line_number}")
    if record.record_id in accepted:
        raise Rejected(
            DUPLICATE, f"record_id {record.record_id} is also on line {accepted[record.record_id]}"
        )
    if line is None:
        named = f"IMSI {record.imsi}" if record.imsi else f"MSISDN {record.msisdn}"
        raise Rejected(UNKNOWN_SUBSCRIBER, f"no line has {named}")
    return None


def _charge_batch(
    session: Session, batch: list[Item], import_id: uuid.UUID, networks: _Networks, *, careful: bool
) -> list[RecordOutcome]:
    records = [item.record for item in batch if item.record is not None]
    by_imsi, by_number = _lines_of(session, records)
    lines = [(by_imsi.get(r.imsi) if r.imsi else by_number.get(r.msisdn or ""), r) for r in records]
    # Locked before looking for records already imported: an import of the same records that
    # holds the locks has committed by the time we get them, and the query below sees its rows.
    locked = _Locked.lock(
        session, [(line, r.end) for line, r in lines if line is not None and r.used_bytes]
    )
    existing = {
        row.record_id: (row.import_id, row.line_number)
        for row in session.execute(
            select(UsageRecord.record_id, UsageRecord.import_id, UsageRecord.line_number).where(
                UsageRecord.record_id.in_({r.record_id for r in records})
            )
        )
    }

    outcomes: list[RecordOutcome | None] = []  # None: to be charged below
    to_charge: list[tuple[int, Record, Line, str]] = []
    accepted: dict[
        str, int
    ] = {}  # record_id -> line number, for the records of this batch to charge
    named = iter(lines)
    for item in batch:
        record = item.record
        if record is None:
            assert item.rejected is not None
            outcomes.append(item.rejected)
            continue
        line, _record = next(named)
        try:
            if _judge(record, line, existing, accepted, import_id) == _ALREADY:
                outcomes.append(_ALREADY)
                continue
            assert line is not None
            zone = networks.zone(session, record.plmn)
            if line.status != "active":
                raise Rejected(LINE_NOT_ACTIVE, f"line {line.iccid} is {line.status}, not active")
        except Rejected as e:
            outcomes.append(
                e.with_traceback(None)
            )  # kept: its traceback would keep the batch's frames
            continue
        accepted[record.record_id] = item.line_number
        to_charge.append((len(outcomes), record, line, zone))
        outcomes.append(None)

    rows: list[dict[str, Any]] = []
    usage: defaultdict[tuple[uuid.UUID, date, str, str], int] = defaultdict(int)
    now = clock.now()
    for index, record, line, zone in to_charge:
        try:
            if careful:
                with session.begin_nested():
                    alone = locked.again(session)  # undone with its savepoint if refused
                    outcome = _charge(session, alone, record, line, zone)
                    alone.ledger.flush()
            else:
                outcome = _charge(session, locked, record, line, zone)
        except TongkaError as e:
            if not careful:
                raise
            outcomes[index] = Rejected(e.code, str(e))
            continue
        outcomes[index] = outcome
        if record.used_bytes:
            usage[(line.id, charging.usage_day(record.end), zone, record.plmn)] += record.used_bytes
        rows.append(
            {
                "record_id": record.record_id,
                "line_id": line.id,
                "plmn": record.plmn,
                "zone": zone,
                "started_at": record.start,
                "ended_at": record.end,
                "bytes_up": record.bytes_up,
                "bytes_down": record.bytes_down,
                "from_buckets": outcome.from_buckets,
                "overage_bytes": outcome.overage_bytes,
                "overage_amount": outcome.overage_amount,
                "overage_currency": outcome.overage_currency,
                "owed_bytes": outcome.owed_bytes,
                "import_id": import_id,
                "line_number": batch[index].line_number,
                "imported_at": now,
            }
        )
    locked.ledger.flush()
    _add_usage(session, usage)
    if rows:
        session.execute(insert(UsageRecord), rows)
    return outcomes  # type: ignore[return-value]


def _charge(
    session: Session, locked: _Locked, record: Record, line: Line, zone: str
) -> ExcessCharge:
    """Charge one record in `locked`'s ledger batch. When the line's buckets cover it, the transfers
    `charge_usage` would make, from the buckets already loaded; otherwise `charge_usage` itself, at
    the record's end (overage, owed)."""
    used = record.used_bytes
    if not used:  # recorded, charges nothing
        return ExcessCharge(0, 0, 0, 0)
    reference = f"usage_record:{record.record_id}"
    if (plan := locked.draws(line.id, zone, record.end, used)) is not None:
        for bucket, amount in plan:
            locked.ledger.transfer(
                bucket.account,
                locked.used,
                amount,
                reason=USAGE_BEYOND_GRANT,
                reference=reference,
            )
        return ExcessCharge(used, 0, 0, 0)
    batch = engine.ChargingBatch(session, record.end, ledger=locked.ledger)
    batch.load(line_ids=[line.id])
    excess = batch.charge_usage(batch.lines[line.id], zone, used, reference=reference)
    batch.flush()
    return excess


def _add_usage(session: Session, usage: dict[tuple[uuid.UUID, date, str, str], int]) -> None:
    """`charging.add_usage` for every (line, day, zone, network) of the batch, in one statement (the same upsert)."""
    if usage:
        add_rows(
            session,
            UsageDay,
            ("line_id", "day", "zone", "plmn"),
            ("bytes",),
            [
                {
                    "id": new_id(),
                    "line_id": line_id,
                    "day": day,
                    "zone": zone,
                    "plmn": plmn,
                    "bytes": used,
                }
                for (line_id, day, zone, plmn), used in usage.items()
            ],
        )


def _lines_of(
    session: Session, records: list[Record]
) -> tuple[dict[str | None, Line], dict[str, Line]]:
    """The lines the batch names, by IMSI and by number: two queries."""
    imsis = {r.imsi for r in records if r.imsi}
    numbers = {r.msisdn for r in records if r.msisdn}
    by_imsi: dict[str | None, Line] = {}
    by_number: dict[str, Line] = {}
    if imsis:
        by_imsi = {
            line.imsi: line for line in session.scalars(select(Line).where(Line.imsi.in_(imsis)))
        }
    if numbers:
        for line in session.scalars(
            select(Line).where(or_(Line.hk_number.in_(numbers), Line.cn_number.in_(numbers)))
        ):
            for number in line.numbers:
                by_number[number] = line
    return by_imsi, by_number


@dataclass(frozen=True, slots=True)
class _LockedBucket:
    bucket: LineBucket
    account: Account  # its ledger account, as locked in the batch

    @property
    def zone(self) -> str:
        return self.bucket.zone


@dataclass
class _Locked:
    """The ledger accounts one batch may touch, locked at once in ascending id, and the lines' buckets.

    Locking per record would take locks in no fixed order across one long transaction and could
    deadlock with online charging, which locks in ascending id. Locked here first (for every record
    of the batch that names a line, charged or not), in one ledger batch that every record of the
    batch is charged in, the balances stay current in memory for the whole batch.
    """

    ledger: LedgerBatch
    used: Account  # system:data_used:bytes
    # By line, those valid at some time of the batch, in drawing order.
    buckets: dict[uuid.UUID, list[_LockedBucket]]
    found: list[LineBucket]
    ids: list[int]  # every account locked
    codes: set[str]  # the operator accounts among them

    @classmethod
    def lock(cls, session: Session, charges: list[tuple[Line, datetime]]) -> _Locked:
        if not charges:
            return cls._read(session, [], [], {USED})
        line_ids = {line.id for line, _at in charges}
        first, last = min(at for _l, at in charges), max(at for _l, at in charges)
        found = ledger_buckets.buckets_between(session, line_ids, first, last)
        ids = [b.account_id for b in found] + ledger_buckets.debt_account_ids(session, line_ids)
        wallets = session.execute(
            select(Wallet.ledger_account_id, Wallet.currency)
            .join(Line, Line.account_id == Wallet.account_id)
            .join(LineOverage, LineOverage.line_id == Line.id)
            .where(Line.id.in_(line_ids), LineOverage.enabled)
        ).all()
        ids += [account_id for account_id, _currency in wallets]
        codes = {USED} | {f"system:overage_sales:{currency}" for _id, currency in wallets}
        return cls._read(session, found, ids, codes)

    @classmethod
    def _read(
        cls, session: Session, found: list[LineBucket], ids: list[int], codes: set[str]
    ) -> _Locked:
        ledger = LedgerBatch(session, clock.now())
        system = ledger.system(codes)
        ledger.lock(ids)
        by_line: defaultdict[uuid.UUID, list[_LockedBucket]] = defaultdict(list)
        for bucket in found:
            by_line[bucket.line_id].append(
                _LockedBucket(bucket, ledger.accounts[bucket.account_id])
            )
        return cls(ledger, system[USED], by_line, found, ids, codes)

    def again(self, session: Session) -> _Locked:
        """The same accounts (locked already) read again into a new ledger batch, as they are now."""
        return self._read(session, self.found, self.ids, self.codes)

    def draws(
        self, line_id: uuid.UUID, zone: str, at: datetime, amount: int
    ) -> list[tuple[_LockedBucket, int]] | None:
        """What `charge_usage` would take from each bucket if the buckets cover `amount`; else None."""
        usable = (
            b
            for b in self.buckets.get(line_id, ())
            if counts_in(b.zone, zone) and b.bucket.valid_from <= at < b.bucket.expires_at
        )
        plan, left = draw(usable, amount)
        return plan if left == 0 else None


# --- the command --------------------------------------------------------------------------


def import_file(
    sessions: sessionmaker[Session],
    path: Path,
    *,
    fmt: str | None = None,
    rejects: Path | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
) -> tuple[ImportSummary, Path]:
    """Import the file at `path`; returns the summary and where the rejects were written."""
    _check_batch(batch_size)
    fmt = format_of(path, fmt)
    rejects = rejects or rejects_path(path, fmt)
    if rejects.resolve() == path.resolve():
        raise ImportRefused("the reject file cannot be the file imported")
    with path.open("rb") as source:
        read_items(
            source, fmt
        )  # a file refused (its header) is refused before the reject file is written
    with (
        path.open("rb") as source,
        rejects.open("w", encoding="utf-8", newline="") as out,
        _progress_bar(path, enabled=progress) as on_batch,
    ):
        summary = import_usage(sessions, source, fmt, out, batch_size=batch_size, on_batch=on_batch)
    return summary, rejects


@contextmanager
def _progress_bar(
    path: Path, *, enabled: bool
) -> Iterator[Callable[[int, ImportSummary], None] | None]:
    """A live bar on stderr (when it is a terminal): bytes read of the file, records and records/s.

    Progress is the position in the file, so nothing is counted beforehand; it is updated
    once per batch, so drawing it costs the import nothing it would notice.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            seconds = task.fields.get("seconds") or 0.0
            rate = task.fields.get("records", 0) / seconds if seconds else 0.0
            return Text(f"{rate:,.0f} records/s", style="progress.data.speed")

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[records]:,} records"),
        Rate(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, refresh_per_second=4) as bar:
        task = bar.add_task(path.name, total=path.stat().st_size, records=0, seconds=0.0)

        def update(position: int, summary: ImportSummary) -> None:
            bar.update(task, completed=position, records=summary.read, seconds=summary.seconds)

        yield update
