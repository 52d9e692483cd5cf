"""Online charging: which network a line is on, and quota granted from its buckets.

A charging session is opened for a line on a network; its zone (mainland or hk) is
the network's. Each request for quota (one rating group) becomes a grant: volume
reserved in the ledger from the line's buckets valid in that zone — that zone's
buckets and `both` buckets, the soonest-expiring first, the narrower zone before
`both` on a tie — possibly across several buckets, never beyond their available
balance. If the owner turned overage on, what the buckets cannot give is granted from
the wallet, up to the month's cap (`overage.py`). Reported usage posts against the
grant's reservations in the same order; what is left is released. Usage beyond the
grant (or reported after its reservations lapsed) is still charged, never free
(`charge_usage`): from what the buckets have left, then overage, and the rest is owed
by the line in that zone (`LineDebt`) and paid back from its next bucket before any new
quota is granted there.

A session's zone is the zone of the network it is on now: a border crossing mid-session
moves it (`engine.ChargingBatch.cross`), the usage before it charged in the old zone and the
usage after it in the new. Rating groups the operator made zero-rated (`set_rating_group`)
are granted without buckets and never charged; any other group is internet data.

The decisions are made by `engine.ChargingBatch`, which the network's API runs for many
requests per transaction (`nchf.py`) and the usage import for a file's records
(`usage_import.py`); this module holds the networks, the rating groups, the usage read
back and the refusals. Every grant is settled exactly once; every byte reported (beyond
the grant too) is added to the line's usage of that day (in Hong Kong time), zone and
network in the same transaction as the settling.

Locks, in this order: the charging session row, then the ledger accounts (all the
accounts of one call at once, ascending id, before any transfer), then the line's usage
row of the day and overage month.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka import clock
from tongka.charging.engine import (  # noqa: F401  (part of this module's interface)
    HONG_KONG,
    QUOTA_LIMIT_REACHED,
    RESERVATION_MARGIN,
    SUCCESS,
    ExcessCharge,
    usage_day,
)
from tongka.charging.models import (
    Network,
    RatingGroup,
    UsageDay,
)
from tongka.errors import Conflict, NotFound, Unprocessable
from tongka.i18n import _


class UnknownNetwork(Unprocessable):
    code = "unknown_network"
    message = _("The network {plmn} is not known to tongka.")


class NetworkNotServed(Unprocessable):
    code = "network_not_served"
    message = _("The network {plmn} is not served at the moment.")


class NetworkNotFound(NotFound):
    code = "network_not_found"
    message = _("The network {plmn} is not in the registry.")


class NetworkExists(Conflict):
    code = "network_exists"
    message = _("The network {plmn} is already in the registry.")


class PlmnInvalid(Unprocessable):
    code = "plmn_invalid"
    message = _("A PLMN is a 3-digit country code and a 2- or 3-digit network code, e.g. 460-00.")


class LineNotActive(Conflict):
    code = "line_not_active"
    message = _("This line is not active.")


# --- networks -----------------------------------------------------------------------------


def network_for(session: Session, plmn: str) -> Network:
    """The active network with this PLMN ("460-00"); unknown or inactive ones are refused."""
    network = session.get(Network, plmn)
    if network is None:
        raise UnknownNetwork(plmn=plmn)
    if not network.active:
        raise NetworkNotServed(plmn=plmn)
    return network


def networks(session: Session) -> list[Network]:
    return list(session.scalars(select(Network).order_by(Network.zone, Network.plmn)))


ZONES = ("mainland", "hk")


def plmn_of(text: str) -> str:
    """A PLMN as the registry writes it: "46000", "460 00" or "460-00" -> "460-00"; "454001" -> "454-001"."""
    digits = "".join(c for c in text.strip() if c not in " -")
    if not digits.isascii() or not digits.isdigit() or len(digits) not in (5, 6):
        raise PlmnInvalid()
    return f"{digits[:3]}-{digits[3:]}"


def add_network(
    session: Session, plmn: str, *, operator: str, zone: str, active: bool = True
) -> Network:
    """A new network in the registry: lines on it are charged in `zone` from the next request."""
    if zone not in ZONES or not operator.strip():
        raise ValueError("a network has an operator's name and a zone, mainland or hk")
    code = plmn_of(plmn)
    if session.get(Network, code) is not None:
        raise NetworkExists(plmn=code)
    network = Network(
        plmn=code,
        mcc=code[:3],
        mnc=code[4:],
        operator=operator.strip(),
        zone=zone,
        active=active,
        created_at=clock.now(),
    )
    session.add(network)
    session.flush()
    return network


def change_network(
    session: Session, plmn: str, *, operator: str, zone: str, active: bool
) -> Network:
    """A network's operator name, zone and whether it is served, from the next request on (a session
    already open keeps the zone it was opened in until it moves)."""
    if zone not in ZONES or not operator.strip():
        raise ValueError("a network has an operator's name and a zone, mainland or hk")
    network = session.get(Network, plmn, with_for_update=True)
    if network is None:
        raise NetworkNotFound(plmn=plmn)
    network.operator, network.zone, network.active = operator.strip(), zone, active
    session.flush()
    return network


# --- rating groups --------------------------------------------------------------------------


def rating_groups(session: Session) -> list[RatingGroup]:
    """The rating groups the operator configured. Any other group the network names is charged as internet data."""
    return list(session.scalars(select(RatingGroup).order_by(RatingGroup.rating_group)))


def set_rating_group(session: Session, number: int, name: str, *, zero_rated: bool) -> RatingGroup:
    """Name a rating group and say whether it is zero-rated; applies to usage reported and quota asked from now on."""
    if not 0 <= number <= 2**32 - 1 or not name.strip() or len(name) > 64:
        raise ValueError("a rating group is a uint32 with a name of 1 to 64 characters")
    now = clock.now()
    group = session.get(RatingGroup, number, with_for_update=True)
    if group is None:
        group = RatingGroup(rating_group=number, created_at=now)
        session.add(group)
    group.name, group.zero_rated, group.updated_at = name.strip(), zero_rated, now
    session.flush()
    return group


# --- usage --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkUsage:
    day: date
    zone: str
    plmn: str
    operator: str
    bytes: int


def usage_between(
    session: Session, line_id: uuid.UUID, first: date, last: date
) -> list[NetworkUsage]:
    """The line's usage per day, zone and network from `first` to `last` (Hong Kong days, both included),
    newest day first, then the most used network first."""
    rows = session.execute(
        select(UsageDay.day, UsageDay.zone, UsageDay.plmn, Network.operator, UsageDay.bytes)
        .join(Network, Network.plmn == UsageDay.plmn)
        .where(
            UsageDay.line_id == line_id,
            UsageDay.day >= first,
            UsageDay.day <= last,
            UsageDay.bytes > 0,
        )
        .order_by(UsageDay.day.desc(), UsageDay.bytes.desc(), UsageDay.plmn, UsageDay.zone)
    ).all()
    return [NetworkUsage(*row) for row in rows]
