"""Wallet test helpers: an account's wallet balance as the ledger holds it now."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from tongka.ledger import service as ledger
from tongka.wallet import service as wallets


def available(session: Session, account_id: uuid.UUID) -> int:
    """What the account's wallet can spend now (not as cached in the session): posted, less held."""
    wallet = wallets.wallet_of(session, account_id)
    assert wallet is not None
    return ledger.balances(session, wallet.ledger_account).available
