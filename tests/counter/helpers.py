"""What the counter's tests share: an agent at a store, their till, the demo line, the forms."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.web.helpers import ACCEPT_HTML, csrf
from tongka import clock
from tongka.account.models import Line
from tongka.counter.models import Shift
from tongka.demo import DEMO_ICCID
from tongka.staff.models import StaffMember
from tongka.stores.models import Store

DEMO_HKID = "A123456(3)"


def demo_line(sessions: sessionmaker[Session]) -> Line:
    with sessions() as s:
        line = s.scalars(select(Line).where(Line.iccid == DEMO_ICCID)).one()
        s.expunge(line)
        return line


def open_shift(sessions: sessionmaker[Session], username: str, float_amount: int = 50000) -> None:
    """The agent's till, opened directly (the shifts pages are another helper's)."""
    with sessions() as s:
        member = s.scalars(select(StaffMember).where(StaffMember.username == username)).one()
        assert member.store_id is not None
        s.add(
            Shift(
                store_id=member.store_id,
                staff_id=member.id,
                opened_at=clock.now(),
                float_amount=float_amount,
            )
        )
        s.commit()


def store_id(sessions: sessionmaker[Session], code: str) -> uuid.UUID:
    with sessions() as s:
        return s.scalars(select(Store.id).where(Store.code == code)).one()


def post(client: TestClient, page: str, action: str, data: dict[str, str], **kw: Any) -> Any:
    """Submit a form from `page` (its CSRF token) to `action`, as the browser does."""
    token = csrf(client.get(page, headers=ACCEPT_HTML).text)
    return client.post(
        action,
        data={"csrf_token": token, **data},
        headers=ACCEPT_HTML,
        follow_redirects=False,
        **kw,
    )


def hidden(page: str) -> dict[str, str]:
    """The hidden fields of the (first) sale form on a page."""
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    }


def confirm(
    client: TestClient, line_id: uuid.UUID, pack_id: str, currency: str, method: str
) -> Any:
    page = f"/counter/lines/{line_id}"
    r = post(
        client,
        page,
        f"{page}/sale",
        {"pack_id": pack_id, "currency": currency, "payment_method": method},
    )
    assert r.status_code == 200, r.text
    return r


def sell(
    client: TestClient,
    line_id: uuid.UUID,
    pack_id: str,
    method: str = "cash",
    currency: str = "HKD",
    **extra: str,
) -> Any:
    """Confirm the pack's price and sell it; the answer to the Sell button."""
    page = confirm(client, line_id, pack_id, currency, method)
    fields = hidden(page.text)
    return client.post(
        f"/counter/lines/{line_id}/sale/pay",
        data={**fields, **extra},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )
