"""`tongka messages ...`: the outbox for operators: list (masked addresses), retry, deliver by hand.

`deliver` sends what is due now, once, through the senders the settings configure (the worker
does it continuously); a channel without a sender is said and its messages stay pending.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from sqlalchemy.orm import Session, sessionmaker

from tongka.config import get_settings
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.errors import TongkaError

messages_app = typer.Typer(
    help="Outgoing SMS and email: list, retry, deliver.", no_args_is_help=True
)


def _sessions() -> sessionmaker[Session]:
    import tongka.models  # noqa: F401 (every table known, as the ORM needs to write one)

    return make_sessionmaker(make_engine(get_settings().database_url))


@messages_app.command("list")
def messages_list(
    failed: Annotated[bool, typer.Option("--failed", help="only those given up")] = False,
    status: Annotated[
        str | None, typer.Option(help="pending, sent, delivered, undeliverable or failed")
    ] = None,
    limit: Annotated[int, typer.Option(help="newest first, at most this many")] = 50,
) -> None:
    """Outgoing messages, newest first: id, when, channel, masked address, status, tries, last error."""
    from tongka.notify import service

    wanted = "failed" if failed else status
    if wanted is not None and wanted not in service.STATUSES:
        typer.echo(f"refused: no status {wanted!r}", err=True)
        raise typer.Exit(2)
    with transaction(_sessions(), read_only=True) as session:
        for m in service.listed(session, wanted, limit):
            error = f"  {m.last_error}" if m.last_error else ""
            typer.echo(
                f"{m.id}  {m.created_at:%Y-%m-%d %H:%M:%S}  {m.channel:<5}  "
                f"{service.mask(m.channel, m.to):<24}  {m.template or '-':<10}  {m.status:<13}  "
                f"tries {m.attempts}{error}"
            )


@messages_app.command("retry")
def messages_retry(message_id: str) -> None:
    """Send a failed (or undeliverable) message again, with a fresh count of tries."""
    from tongka.notify import service

    try:
        with transaction(_sessions()) as session:
            service.retry(session, uuid.UUID(message_id))
    except ValueError:
        typer.echo(f"refused: {message_id!r} is not a message id", err=True)
        raise typer.Exit(2) from None
    except TongkaError as e:
        typer.echo(f"refused: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"message {message_id} is pending again")


@messages_app.command("deliver")
def messages_deliver() -> None:
    """Send the messages that are due now, once (the worker does it all the time)."""
    from tongka.notify import senders, worker

    settings = get_settings()
    configured = senders.senders_from(settings)
    for channel in ("email", "sms"):
        if channel not in configured:
            typer.echo(f"{channel}: no sender configured, its messages stay pending", err=True)
    try:
        sent = worker.deliver_due(
            _sessions(),
            configured,
            worker_id=worker.new_worker_id(),
            policy=worker.Policy.of(settings),
        )
    finally:
        for sender in configured.values():
            sender.close()
    typer.echo(f"sent {sent} message(s)")
