"""`tongka stores import FILE`: the store list as operations keep it, in one CSV file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tongka.config import get_settings
from tongka.db import make_engine, make_sessionmaker, transaction

stores_app = typer.Typer(help="The store finder's stores.", no_args_is_help=True)


@stores_app.command("import")
def stores_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Add or update stores by code from CSV: code, name_en, name_zh_hans, name_zh_hant, district,
    address_en, address_zh_hans, address_zh_hant, hours, nearest_kind (mtr | crossing), nearest_en,
    nearest_zh_hans, nearest_zh_hant, latitude, longitude[, active]. Hours are local time, e.g.
    "mon-fri 10:00-22:00; sat,sun 11:00-23:00" or "daily 06:30-24:00". All or nothing: with any
    bad row, each problem is reported with its line number and no store is changed."""
    from tongka.stores import service

    with (
        transaction(make_sessionmaker(make_engine(get_settings().database_url))) as session,
        file.open(newline="", encoding="utf-8-sig") as f,
    ):
        report = service.import_stores(session, f)
    for line_no, reason in report.errors:
        typer.echo(f"{file}:{line_no}: {reason}", err=True)
    if report.errors:
        typer.echo(f"refused: {len(report.errors)} bad row(s), no store changed", err=True)
        raise typer.Exit(1)
    typer.echo(f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}")
