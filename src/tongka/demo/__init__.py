"""Demo data for `make run`: the catalog, spare SIM inventory, and a demo subscriber with data.

Loading twice changes nothing: packs are upserted by code, lines import idempotently,
and the demo subscriber is made only if missing.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka.account import lines
from tongka.account import service as accounts
from tongka.account.models import Account, Line
from tongka.catalog import service as catalog
from tongka.config import Settings
from tongka.money import GB
from tongka.order import service as orders
from tongka.payment import providers
from tongka.payment import service as payments

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"
DEMO_ICCID = "8985200240000000012"
LINES_CSV = Path(__file__).parent / "lines.csv"

ZONE_NAMES = {
    "mainland": {"en": "Mainland", "zh-Hans": "内地", "zh-Hant": "內地"},
    "hk": {"en": "Hong Kong", "zh-Hans": "香港", "zh-Hant": "香港"},
    "both": {"en": "Mainland + Hong Kong", "zh-Hans": "内地+香港", "zh-Hant": "內地+香港"},
}
# (zone, GB, days, HKD cents, CNY fen)
PACKS = [
    ("mainland", 1, 7, 1700, 1500),
    ("mainland", 5, 30, 5500, 4800),
    ("mainland", 10, 30, 8800, 7800),
    ("hk", 1, 7, 1800, 1600),
    ("hk", 5, 30, 5800, 5200),
    ("hk", 10, 30, 8800, 7900),
    ("both", 1, 7, 2800, 2500),
    ("both", 5, 30, 9800, 8800),
    ("both", 10, 30, 15800, 14200),
]


def load(session: Session, settings: Settings) -> dict[str, int]:
    packs = {}
    for zone, gb, days, hkd, cny in PACKS:
        names = {
            lang: f"{ZONE_NAMES[zone][lang]} {gb} GB · {days} " + ("days" if lang == "en" else "天")
            for lang in ("en", "zh-Hans", "zh-Hant")
        }
        pack = catalog.upsert_pack(
            session,
            code=f"{zone}-{gb}gb-{days}d",
            names=names,
            zone=zone,
            volume_bytes=gb * GB,
            validity_days=days,
            prices={"HKD": hkd, "CNY": cny},
            channels=["app", "web", "store"],
        )
        packs[pack.code] = pack
    report = lines.import_csv_text(session, LINES_CSV.read_text())
    if report.errors:
        raise RuntimeError(f"demo inventory has bad rows: {report.errors}")

    made_account = 0
    if session.scalar(select(Account).where(Account.username == DEMO_USERNAME)) is None:
        account = accounts.register(
            session, username=DEMO_USERNAME, password=DEMO_PASSWORD, email="demo@example.com", language="zh-Hant"
        )
        line = session.scalars(select(Line).where(Line.iccid == DEMO_ICCID)).one()
        line.account_id, line.bound_at = account.id, account.created_at
        lines.set_real_name(
            session, line, document_type="hkid", document_number="A123456(3)", holder_name="Chan Tai Man",
            secret=settings.secret_key.get_secret_value(), source="import",
        )
        # The demo subscriber already renewed once, through the same flow as everyone.
        order = orders.create(
            session, account, line_id=line.id, pack_id=packs["both-5gb-30d"].id, currency="HKD",
            channel="app", payment_ttl_seconds=settings.order_payment_ttl_seconds,
        )
        sandbox = {"sandbox": providers.SandboxProvider(settings.sandbox_payment_secret.get_secret_value(), settings.public_base_url)}
        payment = payments.start(session, order, "alipay", sandbox, settings.public_base_url)
        payments.apply(
            session, payment, "succeeded", payment.amount, payment.currency, receipt_key=settings.receipt_key
        )
        made_account = 1
    return {"packs": len(packs), "lines_added": report.added, "demo_account_created": made_account}
