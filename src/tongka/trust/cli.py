"""`tongka official`: the list of official channels that /official checks against."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.orm import Session, sessionmaker

from tongka.config import get_settings
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.errors import TongkaError

official_app = typer.Typer(
    help="Official channels: numbers, web sites, email senders and social-media accounts.",
    no_args_is_help=True,
)


def _sessions() -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(get_settings().database_url))


@official_app.command("add")
def official_add(
    kind: Annotated[str, typer.Argument(help="phone | web | email | social")],
    value: str,
    label: Annotated[str, typer.Option("--label", help="what it is, in English")],
    label_zh_hans: Annotated[str, typer.Option("--label-zh-hans")] = "",
    label_zh_hant: Annotated[str, typer.Option("--label-zh-hant")] = "",
    platform: Annotated[str, typer.Option(help="the social-media platform")] = "",
) -> None:
    """Put a channel on the official list (audited as the command line)."""
    from tongka.staff import audit
    from tongka.trust import service

    try:
        with transaction(_sessions()) as session:
            channel = service.add_channel(
                session,
                audit.CLI,
                kind=kind,
                value=value,
                platform=platform,
                labels={"en": label, "zh-Hans": label_zh_hans, "zh-Hant": label_zh_hant},
            )
            shown = f"{channel.kind} {channel.value}"
    except TongkaError as e:
        typer.echo(f"refused: {e.detail('en')}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"official: {shown}")


@official_app.command("list")
def official_list() -> None:
    """Every channel on the list: kind, value, active or removed, what it is."""
    from tongka.trust import service

    with transaction(_sessions(), read_only=True) as session:
        for c in service.channels(session):
            kind = f"{c.kind}/{c.platform}" if c.platform else c.kind
            state = "active" if c.active else "removed"
            typer.echo(f"{kind:18} {c.value:32} {state:8} {c.label('en')}")


@official_app.command("remove")
def official_remove(
    kind: Annotated[str, typer.Argument(help="phone | web | email | social")], value: str
) -> None:
    """Take a channel off the list (kept as removed, for the audit log)."""
    from tongka.staff import audit
    from tongka.trust import service

    try:
        with transaction(_sessions()) as session:
            found = service.find_channel(session, kind, value)
            if found is None or not found.active:
                raise service.ChannelNotFound()
            service.remove_channel(session, audit.CLI, found.id)
    except TongkaError as e:
        typer.echo(f"refused: {e.detail('en')}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"removed: {kind} {value}")
