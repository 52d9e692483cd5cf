"""The app's balance read (`GET /api/v1/lines/{line_id}/balance`), its most frequent call: one
statement from the bearer token to the line's buckets and debts, and the answer's JSON.

The statement: the token in force (unexpired, not revoked: a revoked token's row is gone) with
its account, the line if that account owns it, and the line's rows of `ledger.buckets.BALANCE_ROWS`.
No row: the token is not in force (401). A row without a line: nobody's line or someone else's,
the same answer (404). A line without buckets or debts: one row whose balance columns are null.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import bindparam, select

from tongka.account.models import AccessToken, Account, Line
from tongka.account.service import InvalidToken, token_digest
from tongka.db import Together
from tongka.ledger import buckets
from tongka.money import GB_DEFINITION

_ROWS = buckets.BALANCE_ROWS.subquery("balance")
STATEMENT = (
    select(Account.language, Line.id, *_ROWS.c)
    .select_from(AccessToken)
    .join(Account, Account.id == AccessToken.account_id)
    .outerjoin(Line, (Line.id == bindparam("line_id")) & (Line.account_id == Account.id))
    .outerjoin(_ROWS, Line.id.is_not(None))
    .where(AccessToken.token_hash == bindparam("digest"), AccessToken.expires_at > bindparam("now"))
    .order_by(*(_ROWS.c[name] for name in buckets.BALANCE_ORDER))
)
# Reads asked for at once go together (on PostgreSQL as one statement): bench/README.md.
TOGETHER = Together(STATEMENT, ("digest", "line_id", "now"))
_ZONE = 3  # the balance row's zone: null only when the line has no bucket and no debt


def parameters(token: str, line_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    return {"digest": token_digest(token), "line_id": line_id, "now": now}


def balance_of(
    rows: Sequence[Sequence[Any]], now: datetime
) -> tuple[str, buckets.LineBalance | None]:
    """The account's language (its errors' words) and the line's balance, None if the line is not
    the account's, from `STATEMENT`'s rows (aware UTC datetimes). No row: `InvalidToken`."""
    if not rows:
        raise InvalidToken()
    language, line_id = rows[0][0], rows[0][1]
    if line_id is None:
        return language, None
    return language, buckets.balance_of((row[2:] for row in rows if row[_ZONE] is not None), now)


# The answer as `schemas.BalanceOut` would give it through FastAPI (the same keys in the same
# order, pydantic's own serialisation of each value), without building the model, validating it
# and dumping it again: that was most of a read's own CPU. tests/charging/test_balance_reads.py
# holds the two to the same bytes.
_JSON = TypeAdapter(dict[str, Any])


def answer(line_id: uuid.UUID, view: buckets.LineBalance) -> bytes:
    return _JSON.dump_json(
        {
            "line_id": line_id,
            "zones": {
                zone: {
                    "remaining_bytes": z.remaining_bytes,
                    "total_bytes": z.total_bytes,
                    "reserved_bytes": z.reserved_bytes,
                    "owed_bytes": z.owed_bytes,
                    "bucket_count": z.bucket_count,
                    "next_expiry": z.next_expiry,
                }
                for zone, z in view.zones.items()
            },
            "buckets": [
                {
                    "id": b.id,
                    "zone": b.zone,
                    "total_bytes": b.total_bytes,
                    "remaining_bytes": b.remaining_bytes,
                    "reserved_bytes": b.reserved_bytes,
                    "valid_from": b.valid_from,
                    "expires_at": b.expires_at,
                }
                for b in view.buckets
            ],
            "as_of": view.as_of,
            "unit_note": GB_DEFINITION,
        }
    )
