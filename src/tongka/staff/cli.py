"""`tongka staff`: add staff members, list them, deactivate one; in dev, show a member's current code."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.orm import Session, sessionmaker

from tongka.config import get_settings
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.errors import TongkaError

staff_app = typer.Typer(
    help="Staff: store agents, store managers, operator admins.", no_args_is_help=True
)


def _sessions() -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(get_settings().database_url))


@staff_app.command("add")
def staff_add(
    username: str,
    role: Annotated[str, typer.Option(help="agent | manager | admin")],
    store: Annotated[
        str | None, typer.Option(help="the store's code (agents and managers)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="the name shown on receipts")] = None,
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)
    ] = "",
) -> None:
    """Add a staff member. They set up their authenticator app (TOTP) at their first log-in on the
    web, at /staff/login, before they can reach anything."""
    from tongka.account import service as accounts
    from tongka.staff import audit
    from tongka.staff import service as staff

    try:
        password_hash = accounts.new_password_hash(username, password)
        with transaction(_sessions()) as session:
            member = staff.add(
                session,
                username=username,
                display_name=name or username,
                role=role,
                store_code=store,
                password_hash=password_hash,
            )
            session.flush()
            audit.record(
                session,
                audit.CLI,
                "staff.add",
                "staff",
                member.id,
                after={"username": member.username, "role": role, "store": store},
            )
    except TongkaError as e:
        typer.echo(f"refused: {e.detail('en')}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{role} {member.username} added; first log-in at /staff/login sets up TOTP")


@staff_app.command("list")
def staff_list() -> None:
    """Every staff member: username, role, store, TOTP set up, active."""
    from tongka.staff import service as staff

    with transaction(_sessions(), read_only=True) as session:
        for m in staff.members(session):
            s = staff.as_staff(session, m)
            typer.echo(
                f"{m.username:20} {m.role:8} {s.store_code or '-':16} "
                f"{'totp' if m.enrolled else 'no-totp':8} {'active' if m.active else 'inactive'}"
            )


@staff_app.command("deactivate")
def staff_deactivate(username: str) -> None:
    """A staff member who left: their sessions end now and they cannot log in."""
    from tongka.staff import audit
    from tongka.staff import service as staff

    with transaction(_sessions()) as session:
        member = staff.by_username(session, username)
        if member is None:
            typer.echo(f"no staff member {username}", err=True)
            raise typer.Exit(2)
        member.active = False
        staff.end_sessions(session, member.id)
        audit.record(
            session,
            audit.CLI,
            "staff.deactivate",
            "staff",
            member.id,
            before={"active": True},
            after={"active": False},
        )
    typer.echo(f"{username} deactivated")


@staff_app.command("code")
def staff_code(username: str) -> None:
    """Dev only: the member's current TOTP code, as their authenticator app would show it (the
    demo's staff have no phone)."""
    from tongka.staff import service as staff

    settings = get_settings()
    if not settings.dev:
        typer.echo(
            "tongka staff code is for dev installs only: it stands in for a staff member's phone.",
            err=True,
        )
        raise typer.Exit(2)
    with transaction(_sessions(), read_only=True) as session:
        member = staff.by_username(session, username)
        if member is None or not member.enrolled:
            typer.echo(f"no enrolled staff member {username}", err=True)
            raise typer.Exit(2)
        typer.echo(staff.current_code(member, settings.secret_key.get_secret_value()))
