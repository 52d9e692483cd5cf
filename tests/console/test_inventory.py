"""The console's SIM inventory: a CSV upload and its row report; the count of unbound lines."""

from __future__ import annotations

import re

from sqlalchemy import select

from tests.console.catalog_helpers import admin, audit_entries, post
from tests.web.helpers import ACCEPT_HTML
from tongka.account.models import Line
from tongka.db import transaction

GOOD = "iccid,hk_number,cn_number,imsi\n"
ROWS = (
    "8985200240000099014,+85251019901,+8613900009901,454000000009901\n"
    "8985200240000099022,+85251019902,,\n"
    "not-an-iccid,+85261009901,,\n"
)


def _unbound(html: str) -> int:
    found = re.search(r"Lines not yet bound to an account: (\d+)", html)
    assert found, html
    return int(found.group(1))


def test_a_csv_upload_adds_sims_and_reports_each_row(client, sessions, settings, demo) -> None:
    who = admin(client, sessions, settings)
    before = _unbound(client.get("/console/inventory", headers=ACCEPT_HTML).text)
    r = post(
        client,
        "/console/inventory",
        {},
        files={"file": ("sims.csv", (GOOD + ROWS).encode(), "text/csv")},
    )
    assert r.status_code == 200, r.text
    assert "Added: 2" in r.text and "Unchanged: 0" in r.text and "Rejected: 1" in r.text
    assert re.search(r'<td class="num">4</td><td>[^<]*ICCID', r.text), r.text  # line 4 of the file
    assert _unbound(r.text) == before + 2
    with transaction(sessions, read_only=True) as s:
        line = s.scalar(select(Line).where(Line.iccid == "8985200240000099014"))
        assert line is not None and line.account_id is None
    [entry] = audit_entries(sessions, "inventory.import")
    assert entry.username == who.username
    assert entry.after == {"added": 2, "unchanged": 0, "rejected": 1}
    # The same file again changes nothing.
    r = post(
        client,
        "/console/inventory",
        {},
        files={"file": ("sims.csv", (GOOD + ROWS).encode(), "text/csv")},
    )
    assert "Added: 0" in r.text and "Unchanged: 2" in r.text and _unbound(r.text) == before + 2


def test_an_upload_that_is_no_csv_is_refused(client, sessions, settings, demo) -> None:
    admin(client, sessions, settings)
    r = post(client, "/console/inventory", {}, files={"file": ("x.bin", b"\xff\xfe\x00", "x")})
    assert r.status_code == 400 and "Choose a CSV file (UTF-8 text)." in r.text
    r = post(client, "/console/inventory", {})
    assert r.status_code == 400
    r = post(
        client,
        "/console/inventory",
        {},
        files={"file": ("x.csv", b"iccid,number\n1,2\n", "text/csv")},
    )
    assert r.status_code == 200 and "missing columns: cn_number, hk_number" in r.text
    assert "Added: 0" in r.text
    assert [e.after for e in audit_entries(sessions, "inventory.import")] == [
        {"added": 0, "unchanged": 0, "rejected": 1}
    ]
