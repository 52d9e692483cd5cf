"""`tongka offers ...`: create, list, pause, resume and end offers, make coupon codes, report.

Each command is one transaction. Times without an offset are read in `--time-zone`
(Hong Kong or mainland time; both UTC+8).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from pydantic import ValidationError

from tongka.config import get_settings
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.errors import TongkaError
from tongka.money import GB

offers_app = typer.Typer(
    help="Promotions: offers, coupon codes, the redemption report.", no_args_is_help=True
)


def _sessions():
    return make_sessionmaker(make_engine(get_settings().database_url))


def _refuse(message: object) -> typer.Exit:
    typer.echo(f"refused: {message}", err=True)
    return typer.Exit(2)


def _per_currency(pairs: list[str]) -> dict[str, int] | None:
    """`HKD:1000` pairs -> {"HKD": 1000}."""
    out = {}
    for pair in pairs:
        currency, _sep, amount = pair.partition(":")
        out[currency.upper()] = int(amount)
    return out or None


@offers_app.command("create")
def create(
    code: Annotated[str, typer.Argument(help="stable code, e.g. spring-mj")],
    kind: Annotated[str, typer.Option(help="first_topup | spend_threshold | bonus_data | coupon")],
    name: Annotated[str, typer.Option(help="English name")],
    name_zh_hans: Annotated[str | None, typer.Option()] = None,
    name_zh_hant: Annotated[str | None, typer.Option()] = None,
    percent: Annotated[
        float | None, typer.Option(help="percent off the list price, e.g. 12.5")
    ] = None,
    amount: Annotated[
        list[str], typer.Option(help="fixed amount off per currency, CUR:minor (repeat)")
    ] = [],  # noqa: B006
    tier: Annotated[
        list[str], typer.Option(help="满减 tier CUR:min:off in minor units (repeat)")
    ] = [],  # noqa: B006
    bonus_gb: Annotated[
        float | None, typer.Option(help="bonus data in GB (1 GB = 1024³ bytes)")
    ] = None,
    bonus_zone: Annotated[str | None, typer.Option(help="mainland | hk | both")] = None,
    bonus_days: Annotated[int | None, typer.Option()] = None,
    starts: Annotated[datetime | None, typer.Option(help="local time in --time-zone")] = None,
    ends: Annotated[datetime | None, typer.Option(help="local time in --time-zone")] = None,
    time_zone: Annotated[
        str, typer.Option(help="Asia/Hong_Kong or Asia/Shanghai")
    ] = "Asia/Hong_Kong",
    channel: Annotated[
        list[str], typer.Option(help="app | web | store (repeat); default all")
    ] = [],  # noqa: B006
    currency: Annotated[list[str], typer.Option(help="paid in (repeat); default both")] = [],  # noqa: B006
    zone: Annotated[list[str], typer.Option(help="pack zone (repeat)")] = [],  # noqa: B006
    pack: Annotated[list[str], typer.Option(help="pack code (repeat)")] = [],  # noqa: B006
    region: Annotated[list[str], typer.Option(help="account region hk | mainland (repeat)")] = [],  # noqa: B006
    new_customers_only: Annotated[bool, typer.Option()] = False,
    stackable: Annotated[bool, typer.Option()] = False,
    per_customer: Annotated[int | None, typer.Option(help="redemptions per customer")] = None,
    max_redemptions: Annotated[int | None, typer.Option()] = None,
    max_discount: Annotated[
        list[str], typer.Option(help="discount budget CUR:minor (repeat)")
    ] = [],  # noqa: B006
) -> None:
    """Create an offer (active at once, within its time window)."""
    from tongka.promotion import offers
    from tongka.promotion.schemas import OfferIn

    names = {
        "en": name,
        **({"zh-Hans": name_zh_hans} if name_zh_hans else {}),
        **({"zh-Hant": name_zh_hant} if name_zh_hant else {}),
    }
    try:
        tiers = [
            dict(zip(("currency", "min", "off"), t.split(":"), strict=True)) for t in tier
        ] or None
        spec = OfferIn(
            code=code,
            names=names,
            kind=kind,
            stackable=stackable,
            percent_off=percent,
            amount_off=_per_currency(amount),
            tiers=tiers,
            bonus_bytes=round(bonus_gb * GB) if bonus_gb else None,
            bonus_zone=bonus_zone,
            bonus_validity_days=bonus_days,
            starts_at=starts,
            ends_at=ends,
            time_zone=time_zone,
            channels=channel or None,
            currencies=[c.upper() for c in currency] or None,
            zones=zone or None,
            pack_codes=pack or None,
            regions=region or None,
            new_customers_only=new_customers_only,
            per_customer_limit=per_customer,
            max_redemptions=max_redemptions,
            max_discount=_per_currency(max_discount),
        )
        with transaction(_sessions()) as session:
            offer = offers.create(session, spec, "cli")
    except (ValidationError, ValueError, TongkaError) as e:
        raise _refuse(e) from None
    typer.echo(f"offer {offer.code} ({offer.kind}) created: {offer.id}")


@offers_app.command("list")
def list_offers() -> None:
    """Every offer: code, kind, state, redemptions used of the maximum, discount given per currency."""
    from tongka.promotion import offers

    with transaction(_sessions()) as session:
        for o in offers.all_offers(session):
            spent = ", ".join(
                f"{b.currency} {b.spent}"
                + (f"/{b.max_discount}" if b.max_discount is not None else "")
                for b in offers.budgets(session, o.id)
            )
            cap = "∞" if o.max_redemptions is None else o.max_redemptions
            typer.echo(
                f"{o.code:24} {o.kind:16} {o.status:7} redeemed {o.redeemed}/{cap}  spent {spent}"
            )


def _move(offer: str, action: str) -> None:
    from tongka.promotion import offers

    try:
        with transaction(_sessions()) as session:
            moved = offers.move(session, offers.get(session, offer), action)
    except TongkaError as e:
        raise _refuse(e) from None
    typer.echo(f"offer {moved.code}: {moved.status}")


@offers_app.command("pause")
def pause(offer: Annotated[str, typer.Argument(help="code or id")]) -> None:
    """Stop giving an offer for now."""
    _move(offer, "pause")


@offers_app.command("resume")
def resume(offer: Annotated[str, typer.Argument(help="code or id")]) -> None:
    """Give a paused offer again."""
    _move(offer, "resume")


@offers_app.command("end")
def end(offer: Annotated[str, typer.Argument(help="code or id")]) -> None:
    """End an offer for good (its redemptions stay on record)."""
    _move(offer, "end")


@offers_app.command("codes")
def codes(
    offer: Annotated[str, typer.Argument(help="code or id of a coupon offer")],
    count: Annotated[int, typer.Option(min=1, max=100000)] = 1,
    max_uses: Annotated[
        int | None,
        typer.Option(help="uses per code (default 1); 0: shared, no limit but the budget"),
    ] = 1,
    shared: Annotated[
        str | None, typer.Option(help="one shared code of your choosing instead of random ones")
    ] = None,
    batch: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Make coupon codes and print them, one a line: they are shown this once (only keyed hashes are kept)."""
    from tongka.promotion import coupons, offers

    settings = get_settings()
    try:
        with transaction(_sessions()) as session:
            made = coupons.generate(
                session,
                offers.get(session, offer),
                settings.secret_key.get_secret_value(),
                count=1 if shared else count,
                max_uses=max_uses or None,
                code=shared,
                batch=batch,
            )
    except TongkaError as e:
        raise _refuse(e) from None
    for code in made:
        typer.echo(code)


@offers_app.command("report")
def report() -> None:
    """Per offer: redemptions confirmed / held / released, discount given and held per currency, bonus data."""
    from tongka.money import format_bytes
    from tongka.promotion import offers

    with transaction(_sessions()) as session:
        rows = offers.report(session)
    typer.echo(
        "offer,kind,status,confirmed,held,released,discount_given,discount_held,bonus_given,left"
    )
    for r in rows:
        given = " ".join(f"{c}:{a}" for c, a in sorted(r.discount_given.items())) or "-"
        held = " ".join(f"{c}:{a}" for c, a in sorted(r.discount_held.items())) or "-"
        left = "-" if r.redemptions_left is None else r.redemptions_left
        typer.echo(
            f"{r.code},{r.kind},{r.status},{r.confirmed},{r.held},{r.released},{given},{held},"
            f"{format_bytes(r.bonus_bytes_given)},{left}"
        )
