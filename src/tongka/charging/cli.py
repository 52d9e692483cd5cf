"""`tongka overage ...`, `tongka wallets ...` and `tongka charging notify`: the operator's side of overage."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.orm import Session, sessionmaker

from tongka.config import get_settings
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.errors import TongkaError

overage_app = typer.Typer(
    help="Overage: the published rates of data beyond the packs.", no_args_is_help=True
)
wallets_app = typer.Typer(help="Wallets: money accounts keep for overage.", no_args_is_help=True)
charging_app = typer.Typer(help="Online charging jobs.", no_args_is_help=True)
rating_groups_app = typer.Typer(
    help="Rating groups: which are zero-rated (free, granted even with no data). Others are charged as internet data.",
    no_args_is_help=True,
)


def _sessions() -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(get_settings().database_url))


@overage_app.command("rates")
def rates() -> None:
    """The published overage rates: minor units per MB (1 MB = 1,048,576 bytes), by zone and currency."""
    from tongka.charging import overage

    with transaction(_sessions()) as session:
        for r in overage.rates(session):
            typer.echo(f"{r.zone:8}  {r.currency}  {r.per_mb} per MB")


@overage_app.command("set-rate")
def set_rate(
    zone: Annotated[str, typer.Argument(help="mainland | hk")],
    currency: Annotated[str, typer.Argument(help="CNY | HKD")],
    per_mb: Annotated[int, typer.Argument(help="minor units per MB, e.g. 5 for 0.05")],
) -> None:
    """Publish the overage rate of a zone in a currency (applies to grants made from now on)."""
    from tongka.charging import overage

    if zone not in ("mainland", "hk") or currency not in ("CNY", "HKD") or per_mb <= 0:
        typer.echo(
            "refused: zone is mainland or hk, currency CNY or HKD, the rate a positive integer",
            err=True,
        )
        raise typer.Exit(2)
    with transaction(_sessions()) as session:
        overage.set_rate(session, zone, currency, per_mb)
    typer.echo(f"{zone} {currency}: {per_mb} per MB")


@wallets_app.command("credit")
def credit(
    username: str,
    amount: Annotated[int, typer.Argument(help="minor units, e.g. 5000 for 50.00")],
    currency: str,
    reference: Annotated[
        str, typer.Option(help="the top-up's own reference (a store receipt...): credited once")
    ],
) -> None:
    """Put money in an account's wallet (a top-up taken by staff). Once per reference."""
    from sqlalchemy import select

    from tongka.account.models import Account
    from tongka.ledger.models import LedgerAccount
    from tongka.wallet import service as wallets

    if amount <= 0:
        typer.echo("refused: the amount is a positive number of minor units", err=True)
        raise typer.Exit(2)
    try:
        with transaction(_sessions()) as session:
            account = session.scalar(select(Account).where(Account.username == username.lower()))
            if account is None:
                typer.echo(f"refused: no account {username}", err=True)
                raise typer.Exit(2)
            wallet = wallets.credit(session, account, amount, currency, reference=reference)
            available = session.get_one(LedgerAccount, wallet.ledger_account_id).available
    except TongkaError as e:
        typer.echo(f"refused: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wallet of {account.username}: {available} {wallet.currency} available")


@charging_app.command("notify")
def send_notifications() -> None:
    """Send the queued REAUTHORIZATION notifications to the network now (the background runner does it every second)."""
    import httpx

    from tongka import outbound
    from tongka.charging import notify

    with httpx.Client(trust_env=False) as http:
        report = notify.deliver_due(_sessions(), http, allowed=outbound.allowed(get_settings()))
    typer.echo(f"sent {report.sent}, to retry {report.retrying}, given up {report.failed}")


@rating_groups_app.command("list")
def rating_groups_list() -> None:
    """The configured rating groups: number, charged or zero-rated, name."""
    from tongka.charging import service as charging

    with transaction(_sessions()) as session:
        for g in charging.rating_groups(session):
            typer.echo(
                f"{g.rating_group:>10}  {'zero-rated' if g.zero_rated else 'charged':10}  {g.name}"
            )
    typer.echo("any other rating group: charged as internet data")


@rating_groups_app.command("set")
def rating_groups_set(
    number: Annotated[int, typer.Argument(help="the 3GPP ratingGroup the packet core reports")],
    name: Annotated[str, typer.Argument(help="what it is, e.g. 'self-service site and app'")],
    zero_rated: Annotated[
        bool, typer.Option("--zero-rated/--charged", help="free (always granted) or charged")
    ] = False,
) -> None:
    """Name a rating group and make it zero-rated or charged (from the next request on)."""
    from tongka.charging import service as charging

    try:
        with transaction(_sessions()) as session:
            group = charging.set_rating_group(session, number, name, zero_rated=zero_rated)
            line = f"{group.rating_group}: {group.name}, {'zero-rated' if group.zero_rated else 'charged'}"
    except ValueError as e:
        typer.echo(f"refused: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(line)
