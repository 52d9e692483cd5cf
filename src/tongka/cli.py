"""The `tongka` command: serve, work in the background, migrate, load the demo, import lines, verify the ledger, run the jobs.

Each command is one transaction: it commits when it ends normally.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session, sessionmaker

from tongka.config import Settings, get_settings
from tongka.db import make_engine, make_sessionmaker, transaction

app = typer.Typer(
    help="tongka: prepaid cross-border SIM and eSIM data service.", no_args_is_help=True
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
lines_app = typer.Typer(help="The SIM inventory.", no_args_is_help=True)
ledger_app = typer.Typer(help="The ledger.", no_args_is_help=True)
orders_app = typer.Typer(help="Orders.", no_args_is_help=True)
keys_app = typer.Typer(help="Keys and secrets.", no_args_is_help=True)
rates_app = typer.Typer(help="Exchange rates between CNY and HKD.", no_args_is_help=True)
payments_app = typer.Typer(help="Payments and refunds.", no_args_is_help=True)
sandbox_app = typer.Typer(help="The sandbox payment providers.", no_args_is_help=True)
networks_app = typer.Typer(
    help="The networks (PLMNs) lines may use, and their zones.", no_args_is_help=True
)
usage_app = typer.Typer(help="Usage records from partner networks.", no_args_is_help=True)
nchf_app = typer.Typer(
    help="The network's Nchf listener (HTTP/2), on its own.", no_args_is_help=True
)
for sub, name in (
    (db_app, "db"),
    (demo_app, "demo"),
    (lines_app, "lines"),
    (ledger_app, "ledger"),
    (orders_app, "orders"),
    (keys_app, "keys"),
    (rates_app, "rates"),
    (payments_app, "payments"),
    (sandbox_app, "sandbox"),
    (networks_app, "networks"),
    (usage_app, "usage"),
    (nchf_app, "nchf"),
):
    app.add_typer(sub, name=name)

from tongka.charging.cli import charging_app, overage_app, rating_groups_app, wallets_app  # noqa: E402 (after the core groups)

for sub, name in (
    (overage_app, "overage"),
    (wallets_app, "wallets"),
    (charging_app, "charging"),
    (rating_groups_app, "rating-groups"),
):
    app.add_typer(sub, name=name)

from tongka.promotion.cli import offers_app  # noqa: E402

app.add_typer(offers_app, name="offers")

from tongka.jobs.cli import jobs_app  # noqa: E402

app.add_typer(jobs_app, name="jobs")

from tongka.notify.cli import messages_app  # noqa: E402

app.add_typer(messages_app, name="messages")

from tongka.stores.cli import stores_app  # noqa: E402

app.add_typer(stores_app, name="stores")

from tongka.staff.cli import staff_app  # noqa: E402

app.add_typer(staff_app, name="staff")

from tongka.trust.cli import official_app  # noqa: E402

app.add_typer(official_app, name="official")


@app.callback()
def _configure() -> None:
    from tongka import logs

    logs.configure(json=False)


def _sessions(settings: Settings) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(settings.database_url))


def _checked_settings() -> Settings:
    """The settings, or a clear message (not a traceback) and exit 2 if they are unsafe."""
    from pydantic import ValidationError

    from tongka import config

    try:
        settings = get_settings()
        config.check(settings)
    except (config.UnsafeSettings, ValidationError) as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    return settings


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[
        int, typer.Option(help="processes; they share nothing but the database")
    ] = 1,
    nchf_workers: Annotated[
        int, typer.Option(help="Nchf listener processes, each with its charging process")
    ] = 1,
) -> None:
    """Serve the API and pages on host:port, and the network's Nchf API on TONGKA_NCHF_BIND (HTTP/2).

    Refuses unsafe production settings, listing each problem. Ctrl-C or SIGTERM stops both
    listeners; if one ends by itself, the other is stopped and the command exits 1. With
    TONGKA_BACKGROUND=embedded (the default on SQLite) it also does `tongka worker`'s work.
    """
    from tongka import serving

    settings = _checked_settings()
    code = serving.serve_both(
        settings, host=host, port=port, workers=workers, nchf_workers=nchf_workers
    )
    if code:
        raise typer.Exit(code)


@app.command()
def worker() -> None:
    """Run the background work until Ctrl-C or SIGTERM: the scheduled jobs (`tongka jobs list`) and the
    charging notifications. Run as many as wanted, anywhere: each due job runs in one of them only."""
    from tongka import background

    code = background.run_worker(_checked_settings())
    if code:
        raise typer.Exit(code)


@nchf_app.command("serve")
def nchf_serve(
    workers: Annotated[int, typer.Option(help="processes, each with its charging process")] = 1,
    with_parent: Annotated[
        bool, typer.Option(hidden=True, help="stop when standard input closes")
    ] = False,
) -> None:
    """Serve only the network's Nchf_ConvergedCharging API on TONGKA_NCHF_BIND: HTTP/2 (h2c, or TLS with
    TONGKA_NCHF_TLS_CERT/_KEY, mutual with TONGKA_NCHF_CLIENT_CA); in dev HTTP/1.1 too."""
    from tongka import serving

    serving.serve_nchf(_checked_settings(), workers=workers, with_parent=with_parent)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations (the only way the schema changes)."""
    from tongka.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}")


@demo_app.command("load")
def demo_load() -> None:
    """Load the demo catalog, inventory and subscriber (idempotent; dev only)."""
    import io

    from tongka import clock, demo
    from tongka.charging import usage_import

    settings = get_settings()
    if not settings.dev:  # the demo subscriber's password is published
        typer.echo(
            "tongka demo load refuses to run in production: the demo account's password is public. "
            "Set TONGKA_ENV=dev for a demo install.",
            err=True,
        )
        raise typer.Exit(2)
    sessions = _sessions(settings)
    with transaction(sessions) as session:
        result = demo.load(session, settings)
        demo.grant_history(session, clock.now())
    # Four weeks of the demo line's use, charged as a partner's usage file is (once per record).
    history = usage_import.import_usage(
        sessions, io.BytesIO(demo.usage_history(clock.now())), "csv", io.StringIO()
    )
    result["usage_days_imported"] = history.imported
    typer.echo(", ".join(f"{k}: {v}" for k, v in result.items()))
    typer.echo(f"demo login: {demo.DEMO_USERNAME} / {demo.DEMO_PASSWORD}")
    typer.echo(
        "demo staff (http://127.0.0.1:8000/staff/login): "
        + ", ".join(username for username, *_ in demo.DEMO_STAFF)
        + f" / {demo.DEMO_PASSWORD}; code: tongka staff code USERNAME"
    )


@lines_app.command("import")
def lines_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Import SIM inventory from CSV: iccid,hk_number,cn_number[,imsi]. Bad rows are reported and skipped."""
    from tongka.account import lines

    with (
        transaction(_sessions(get_settings())) as session,
        file.open(newline="", encoding="utf-8-sig") as f,
    ):
        report = lines.import_lines(session, f)
    for line_no, reason in report.errors:
        typer.echo(f"{file}:{line_no}: {reason}", err=True)
    typer.echo(f"added {report.added}, unchanged {report.unchanged}, rejected {len(report.errors)}")
    if report.errors:
        raise typer.Exit(1)


@lines_app.command("list")
def lines_list(
    unbound: Annotated[
        bool, typer.Option("--unbound", help="only lines nobody has bound yet")
    ] = False,
) -> None:
    """List lines (ICCID and numbers)."""
    from sqlalchemy import select

    from tongka.account import lines
    from tongka.account.models import Line

    with transaction(_sessions(get_settings())) as session:
        rows = (
            lines.unbound_lines(session)
            if unbound
            else list(session.scalars(select(Line).order_by(Line.iccid)))
        )
        for line in rows:
            state = "unbound" if line.account_id is None else "bound"
            typer.echo(
                f"{line.iccid}  {line.hk_number or '-':14}  {line.cn_number or '-':15}  {state}"
            )


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Recompute every balance from the entries; exit 1 on any difference."""
    from tongka.ledger import service as ledger

    with transaction(_sessions(get_settings())) as session:
        problems = ledger.verify(session)
    for problem in problems:
        typer.echo(str(problem), err=True)
    if problems:
        typer.echo(f"ledger: {len(problems)} problem(s)", err=True)
        raise typer.Exit(1)
    typer.echo("ledger: every balance matches its entries")


@ledger_app.command("expire")
def ledger_expire() -> None:
    """Release reservations past their time and empty expired buckets."""
    from tongka.ledger import buckets

    with transaction(_sessions(get_settings())) as session:
        count = buckets.expire_buckets(session)
    typer.echo(f"expired {count} bucket(s)")


@app.command()
def simulate(
    lines: Annotated[
        int, typer.Option(help="phones to play, one line each: bound lines first")
    ] = 10,
    minutes: Annotated[float, typer.Option(help="how long to run")] = 5.0,
    seconds: Annotated[
        float | None, typer.Option(help="how long to run, instead of --minutes")
    ] = None,
    nchf_url: Annotated[
        str | None,
        typer.Option(
            help="the Nchf listener [default: from TONGKA_NCHF_BIND, http://127.0.0.1:8001]"
        ),
    ] = None,
    ca: Annotated[
        Path | None, typer.Option(help="https: the CA of the listener's certificate (PEM)")
    ] = None,
    cert: Annotated[
        Path | None, typer.Option(help="https: this SMF's client certificate (PEM), for mutual TLS")
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="https: the client certificate's key (PEM)")
    ] = None,
    nrf_url: Annotated[
        str | None,
        typer.Option(
            help="the NRF giving the access token [default: the Nchf listener, tongka's dev NRF]"
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="the same seed plays the same phones' choices")
    ] = None,
) -> None:
    """Play a packet core over HTTP/2: phones open charging sessions, use data, cross the border, release; live figures."""
    from tongka.charging import simulate as simulation

    settings = get_settings()
    with transaction(_sessions(settings)) as session:
        phones = simulation.subscribers(session, lines)
    if not phones:
        typer.echo(
            "no active line with a number or IMSI: load the demo or import lines first", err=True
        )
        raise typer.Exit(1)
    duration = seconds if seconds is not None else minutes * 60
    tls = simulation.ClientTLS(ca, cert, key) if ca or cert else None
    figures = simulation.run(
        phones, duration, nchf_url or _nchf_url(settings), tls=tls, seed=seed, nrf_url=nrf_url
    )
    if figures.interrupted:
        raise typer.Exit(130)  # as a shell reports a command ended by Ctrl-C


def _nchf_url(settings: Settings) -> str:
    """Where this machine reaches the Nchf listener: its bind address (a wildcard one: loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.nchf_host, settings.nchf_host)
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if settings.nchf_tls else 'http'}://{host}:{settings.nchf_port}"


@networks_app.command("list")
def networks_list() -> None:
    """The network registry: PLMN, zone, operator, and whether it is served."""
    from tongka.charging import service as charging

    with transaction(_sessions(get_settings())) as session:
        for n in charging.networks(session):
            typer.echo(
                f"{n.plmn}  {n.zone:8}  {n.operator:24}  {'active' if n.active else 'inactive'}"
            )


@usage_app.command("import")
def usage_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    format: Annotated[
        str | None, typer.Option(help="csv or jsonl [default: from the extension]")
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option(help="where rejected records go [default: FILE.rejects.<ext>]")
    ] = None,
    batch: Annotated[int, typer.Option(help="records per transaction")] = 1000,
) -> None:
    """Charge usage records (CSV or JSON Lines) like online usage, once per record_id; rejects to a file."""
    from tongka.charging import usage_import as imports

    try:
        summary, written = imports.import_file(
            _sessions(get_settings()),
            file,
            fmt=format,
            rejects=rejects,
            batch_size=batch,
            progress=True,
        )
    except imports.ImportRefused as e:
        typer.echo(f"refused: {e}", err=True)
        raise typer.Exit(2) from None
    for line in summary.report():
        typer.echo(line)
    typer.echo(f"rejected records: {written}")
    if summary.rejected_total:
        raise typer.Exit(1)


@orders_app.command("expire")
def orders_expire() -> None:
    """Close orders left unpaid past their payment time."""
    from tongka.renewal import flow

    with transaction(_sessions(get_settings())) as session:
        count = flow.expire_unpaid(session)
    typer.echo(f"expired {count} order(s)")


@rates_app.command("set")
def rates_set(base: str, quote: str, rate: str) -> None:
    """From now on, 1 BASE = RATE QUOTE for new orders (e.g. `tongka rates set HKD CNY 0.9234`)."""
    from tongka.fx import service as fx

    try:
        micros = fx.parse_rate(rate)
        with transaction(_sessions(get_settings())) as session:
            fx.set_rate(session, base.upper(), quote.upper(), micros, set_by="cli")
    except ValueError as e:
        typer.echo(f"refused: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"1 {base.upper()} = {micros / fx.SCALE:.6f} {quote.upper()}")


@rates_app.command("list")
def rates_list() -> None:
    """The rates in force."""
    from tongka.fx import service as fx

    with transaction(_sessions(get_settings())) as session:
        for r in fx.rates(session):
            typer.echo(
                f"1 {r.base} = {r.rate_micros / fx.SCALE:.6f} {r.quote}  (since {r.created_at:%Y-%m-%d %H:%M} UTC, {r.set_by})"
            )


@payments_app.command("refund")
def payments_refund(
    payment_id: str,
    amount: Annotated[int, typer.Option(help="minor units (cents), in the payment's currency")],
    reason: Annotated[str, typer.Option()],
    key: Annotated[str, typer.Option(help="retry with the same key to refund once")] = "",
) -> None:
    """Refund part or all of a payment through its provider (pro-rated to the unused data)."""
    import uuid

    from tongka.errors import TongkaError
    from tongka.payment import providers
    from tongka.renewal import flow
    from tongka.staff import audit

    settings = get_settings()
    refund_id = uuid.uuid5(uuid.NAMESPACE_URL, f"tongka:refund:cli:{key}") if key else uuid.uuid4()
    try:
        with transaction(_sessions(settings)) as session:
            record = flow.refund(
                session,
                providers.build(settings),
                uuid.UUID(payment_id),
                amount=amount,
                reason=reason,
                requested_by="cli",
                refund_id=refund_id,
            )
            audit.record(
                session,
                audit.CLI,
                "payment.refund",
                "payment",
                payment_id,
                after={"refund_id": record.id, "amount": record.amount, "reason": reason},
            )
    except (TongkaError, ValueError) as e:
        typer.echo(f"refused: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"refund {record.id}: {record.amount} {record.currency} {record.status}, {record.bytes_withdrawn} bytes withdrawn"
    )


@payments_app.command("sync")
def payments_sync(
    older_than: Annotated[
        int, typer.Option(help="seconds a payment has been pending before we ask")
    ] = 120,
) -> None:
    """Ask providers about pending payments and settle them; close those of closed orders; send queued refunds."""
    from datetime import timedelta

    from tongka.payment import providers
    from tongka.renewal import jobs

    settings = get_settings()
    with transaction(_sessions(settings)) as session:
        report = jobs.sync(
            session,
            providers.build(settings),
            older_than=timedelta(seconds=older_than),
            receipt_key=settings.receipt_key,
        )
    typer.echo(
        f"settled {report.settled}, closed {report.closed}, refunds sent {report.refunds_sent}, "
        f"provider unreachable {report.unreachable}"
    )


@payments_app.command("reconcile")
def payments_reconcile(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Compare a provider's settlement statement (CSV) with tongka's records; list every difference (exit 1 if any)."""
    from tongka.payment import reconcile

    with file.open(newline="", encoding="utf-8-sig") as f:
        lines, differences = reconcile.read(f)
    with transaction(_sessions(get_settings())) as session:
        differences += reconcile.reconcile(session, lines)
    for difference in differences:
        typer.echo(str(difference))
    typer.echo(f"{len(lines)} statement line(s), {len(differences)} difference(s)")
    if differences:
        raise typer.Exit(1)


@sandbox_app.command("statement")
def sandbox_statement(
    provider: Annotated[
        str | None, typer.Option(help="wechat, alipay, stripe or paypal; default all")
    ] = None,
    day: Annotated[
        str | None, typer.Option("--date", help="YYYY-MM-DD (UTC); default every day")
    ] = None,
) -> None:
    """Print the settlement statement the sandbox providers would send (CSV, for `payments reconcile`)."""
    from datetime import date

    from tongka.sandbox import statement

    statement.write(
        sys.stdout,
        get_settings().sandbox_store_url,
        provider,
        date.fromisoformat(day) if day else None,
    )


@keys_app.command("generate")
def keys_generate() -> None:
    """Print new secrets and sandbox provider keys as TONGKA_*= lines (for var/tongka.env)."""
    from tongka.sandbox.keys import env_lines, generate

    typer.echo(env_lines(generate()), nl=False)


@keys_app.command("nrf-dev")
def keys_nrf_dev(
    out: Annotated[
        Path, typer.Option(help="where the key is written (mode 0600); an existing file is kept")
    ] = Path("var/nrf-dev-key.pem"),
) -> None:
    """Make the ES256 key the dev NRF signs network functions' access tokens with (dev only)."""
    from tongka.charging.nf_auth import write_dev_key

    try:
        kid = write_dev_key(out)
    except FileExistsError:
        typer.echo(
            f"{out} exists; remove it first to make a new key (tokens signed with it stop working).",
            err=True,
        )
        raise typer.Exit(1) from None
    typer.echo(f"dev NRF key written to {out} (kid {kid})")


def main() -> None:  # pragma: no cover
    sys.exit(app())
