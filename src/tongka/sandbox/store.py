"""The simulated providers' own records, in a database of their own (`TONGKA_SANDBOX_STORE_URL`).

A real provider keeps its payments on its side; so do the simulators. Keeping them out
of tongka's database also means a simulator answering an API call never waits on a
lock held by the tongka transaction that made the call.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from fastapi import Request
from sqlalchemy import JSON, BigInteger, String
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from tongka import clock
from tongka.db import UTCDateTime, make_engine
from tongka.money import CURRENCIES, Money


class SimBase(DeclarativeBase):
    pass


class SimPayment(SimBase):
    """One payment as the provider knows it."""

    __tablename__ = "sim_payments"

    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), primary_key=True)  # the provider's id
    merchant_reference: Mapped[str] = mapped_column(String(64), index=True)  # tongka's payment id
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(
        String(16), default="pending"
    )  # pending | succeeded | failed | closed
    notify_url: Mapped[str | None] = mapped_column(String(500))
    data: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict
    )  # whatever else the provider keeps
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    refunds: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=lambda: clock.now())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


@cache
def sessions(url: str) -> sessionmaker[Session]:
    engine = make_engine(url)
    SimBase.metadata.create_all(
        engine
    )  # the simulators' private store, not part of tongka's schema
    return sessionmaker(engine, expire_on_commit=False)


def store_sessions(request: Request) -> sessionmaker[Session]:
    """The simulators' store, for a request the app serves."""
    return sessions(request.app.state.settings.sandbox_store_url)


def price(amount: int, currency: str, language: str) -> str:
    """An amount as the payer's page shows it; records keep their currency as a plain string."""
    if currency not in CURRENCIES:
        raise ValueError(f"no such currency: {currency!r}")
    return Money(amount, currency).format(language)
