"""Demo data for `make run`: the catalog, spare SIM inventory, a demo subscriber with data, and the
stores of the store finder.

Loading twice changes nothing: packs and stores are upserted by code, lines import idempotently,
and the demo subscriber is made only if missing.
"""

from __future__ import annotations

import csv
import functools
import io
import secrets
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka.account import lines
from tongka.account import service as accounts
from tongka.account.models import Account, Line
from tongka.catalog import service as catalog
from tongka.charging import service as charging
from tongka.config import Settings
from tongka.ledger import buckets
from tongka.ledger.models import Bucket
from tongka.money import GB, MB
from tongka.payment import providers
from tongka.promotion import coupons, offers
from tongka.promotion.models import Offer
from tongka.promotion.schemas import OfferIn
from tongka.renewal import flow
from tongka.staff import audit
from tongka.staff import service as staff
from tongka.stores import service as stores
from tongka.trust import service as trust
from tongka.wallet import service as wallets

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"
DEMO_ICCID = "8985200240000000012"
LINES_CSV = Path(__file__).parent / "lines.csv"
HONG_KONG = ZoneInfo("Asia/Hong_Kong")
STORES_CSV = Path(__file__).parent / "stores.csv"
# Staff for two stores and an operator admin, all with the demo password; `make run` prints them.
# Their authenticator app is set up already: `tongka staff code USERNAME` shows the code (dev only).
DEMO_STAFF = (
    ("agent-lowu", "Wong Ka Yan", "agent", "lo-wu"),
    ("manager-lowu", "Lee Siu Ming", "manager", "lo-wu"),
    ("agent-harbour", "Cheung Wai Man", "agent", "harbour-city"),
    ("admin", "Operations", "admin", None),
)
# The operator's official channels, as `tongka official add` keeps them: what /official says is ours.
DEMO_OFFICIAL = (
    (
        "phone",
        "+852 3001 8888",
        "",
        ("tongka's customer service hotline", "通卡客服热线", "通卡客戶服務熱線"),
    ),
    ("web", "tongka.hk", "", ("tongka's web site", "通卡官方网站", "通卡官方網站")),
    ("email", "@tongka.hk", "", ("tongka's email", "通卡官方电邮", "通卡官方電郵")),
    (
        "social",
        "tongka_hk",
        "wechat",
        ("tongka's WeChat account", "通卡微信公众号", "通卡微信公眾號"),
    ),
)
DEMO_COUPON = "TONGKA-DEMO"  # shared, once per customer; `make run` prints it
BIG_PACKS = ["mainland-10gb-30d", "hk-10gb-30d", "both-10gb-30d"]
# The demo's offers, on the 10 GB packs (the smaller packs keep their list prices).
OFFERS = [
    OfferIn(
        code="demo-first-topup",
        kind="first_topup",
        percent_off=20,
        channels=["app"],
        pack_codes=BIG_PACKS,
        names={
            "en": "First top-up: 20 % off a 10 GB pack",
            "zh-Hans": "首充 10GB 套餐八折",
            "zh-Hant": "首充 10GB 套餐八折",
        },
    ),
    OfferIn(
        code="demo-spend-150-save-15",
        kind="spend_threshold",
        channels=["app"],
        tiers=[
            {"currency": "HKD", "min": 15000, "off": 1500},
            {"currency": "CNY", "min": 14000, "off": 1400},
        ],
        names={
            "en": "Spend HK$150 / ¥140, save HK$15 / ¥14",
            "zh-Hans": "满 HK$150/¥140 减 HK$15/¥14",
            "zh-Hant": "滿 HK$150/¥140 減 HK$15/¥14",
        },
    ),
    OfferIn(
        code="demo-bonus-1gb",
        kind="bonus_data",
        pack_codes=BIG_PACKS,
        bonus_bytes=GB,
        bonus_zone="both",
        bonus_validity_days=30,
        names={
            "en": "1 GB free with any 10 GB pack",
            "zh-Hans": "买 10GB 送 1GB",
            "zh-Hant": "買 10GB 送 1GB",
        },
    ),
    OfferIn(
        code="demo-coupon",
        kind="coupon",
        amount_off={"HKD": 1000, "CNY": 900},
        stackable=True,
        per_customer_limit=1,
        max_redemptions=1000,
        names={
            "en": "Coupon: HK$10 / ¥9 off",
            "zh-Hans": "优惠券：减 HK$10/¥9",
            "zh-Hant": "優惠券：減 HK$10/¥9",
        },
    ),
]

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


# The packet core's rating groups (as the simulator reports them): internet data is charged; the
# self-service site and the official app are zero-rated, so a line with no data left can still renew.
RATING_GROUPS = [(10, "internet", False), (20, "self-service site and app", True)]


@functools.cache
def _demo_password_hash() -> str:
    """One Argon2 hash of the demo's shared password for its five logins, made once a process (a
    quarter second each; the browser tests load the demo in a process of their own each time)."""
    return accounts.new_password_hash(DEMO_USERNAME, DEMO_PASSWORD)


def load(session: Session, settings: Settings) -> dict[str, int]:
    for number, name, zero_rated in RATING_GROUPS:
        charging.set_rating_group(session, number, name, zero_rated=zero_rated)
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
    made_offers = _offers(session, settings)
    report = lines.import_csv_text(session, LINES_CSV.read_text())
    if report.errors:
        raise RuntimeError(f"demo inventory has bad rows: {report.errors}")
    with STORES_CSV.open(newline="", encoding="utf-8") as f:
        store_report = stores.import_stores(session, f)
    if store_report.errors:
        raise RuntimeError(f"demo stores have bad rows: {store_report.errors}")

    for kind, value, platform, (en, hans, hant) in DEMO_OFFICIAL:
        if trust.find_channel(session, kind, value) is None:
            trust.add_channel(
                session,
                audit.CLI,
                kind=kind,
                value=value,
                platform=platform,
                labels={"en": en, "zh-Hans": hans, "zh-Hant": hant},
            )
    made_staff = 0
    for username, name, role, store in DEMO_STAFF:
        if staff.by_username(session, username) is None:
            member = staff.add(
                session,
                username=username,
                display_name=name,
                role=role,
                store_code=store,
                password_hash=_demo_password_hash(),
            )
            staff.enrol_directly(member, settings.secret_key.get_secret_value())
            made_staff += 1

    made_account = 0
    if session.scalar(select(Account).where(Account.username == DEMO_USERNAME)) is None:
        account = accounts.create_account(
            session,
            username=DEMO_USERNAME,
            password_hash=_demo_password_hash(),
            email="demo@example.com",
            language="zh-Hant",
        )
        line = session.scalars(select(Line).where(Line.iccid == DEMO_ICCID)).one()
        line.account_id, line.bound_at = account.id, account.created_at
        lines.set_real_name(
            session,
            line,
            document_type="hkid",
            document_number="A123456(3)",
            holder_name="Chan Tai Man",
            secret=settings.secret_key.get_secret_value(),
            source="import",
        )
        # The demo subscriber already renewed once, through the same flow as everyone.
        # The demo's payment is applied here, never called back: any secret signs nothing that is checked.
        secret = (
            settings.sandbox_secret
            if settings.sandbox_payment_secret
            else secrets.token_urlsafe(32)
        )
        sandbox = {"sandbox": providers.SandboxProvider(secret, settings.public_base_url)}
        _order, payment = flow.place_order(
            session,
            account,
            line_id=line.id,
            pack_id=packs["both-5gb-30d"].id,
            currency="HKD",
            channel="app",
            method="alipay",
            providers=sandbox,
            base_url=settings.public_base_url,
            payment_ttl_seconds=settings.order_payment_ttl_seconds,
        )
        flow.confirm(
            session,
            payment,
            "succeeded",
            payment.amount,
            payment.currency,
            receipt_key=settings.receipt_key,
        )
        # HK$50 in the wallet, so turning overage on in the app shows what it does (off, as for everyone).
        wallets.credit(session, account, 5000, "HKD", reference="demo-topup")
        made_account = 1
    return {
        "packs": len(packs),
        "lines_added": report.added,
        "demo_account_created": made_account,
        "offers_added": made_offers,
        "stores_added": store_report.added,
        "staff_added": made_staff,
    }


def _offers(session: Session, settings: Settings) -> int:
    """The demo's offers (made once, by code) and its shared coupon code."""
    made = 0
    for spec in OFFERS:
        offer = session.scalar(select(Offer).where(Offer.code == spec.code))
        if offer is None:
            offer = offers.create(session, spec, "demo")
            made += 1
        secret = settings.secret_key.get_secret_value()
        if offer.kind == "coupon" and coupons.find(session, secret, DEMO_COUPON) is None:
            coupons.generate(session, offer, secret, code=DEMO_COUPON, max_uses=None, batch="demo")
    return made


# --- four weeks of use, so the personal centre has a usage chart and a forecast at once ----------

HISTORY_DAYS = 28
HISTORY_REFERENCE = "demo-history"
# (weekday MB, weekend MB) a day: Hong Kong most days; the mainland more at weekends (trips north).
HISTORY_MB = {"hk": (300, 520), "mainland": (60, 380)}
HISTORY_PLMN = {"hk": "454-00", "mainland": "460-00"}


def _local_midnight(moment: datetime) -> datetime:
    local = moment.astimezone(HONG_KONG)
    return datetime.combine(local.date(), time(), HONG_KONG)


def grant_history(session: Session, now: datetime) -> bool:
    """The pack the demo subscriber used these four weeks (both zones, ended at midnight): the
    buckets the history below is charged to. Once: False when it is there already."""
    line = session.scalars(select(Line).where(Line.iccid == DEMO_ICCID)).one()
    if session.scalar(select(Bucket.id).where(Bucket.reference == HISTORY_REFERENCE)) is not None:
        return False
    today = _local_midnight(now)
    buckets.grant(
        session,
        line_id=line.id,
        zone="both",
        amount=20 * GB,
        valid_from=today - timedelta(days=HISTORY_DAYS),
        expires_at=today,
        reason="demo",
        reference=HISTORY_REFERENCE,
    )
    return True


def usage_history(now: datetime) -> bytes:
    """The demo line's use of each of the last four Hong Kong days before today, as a partner's
    usage file (CSV): charged through `tongka usage import`'s own path, once per record id."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ("record_id", "imsi", "msisdn", "plmn", "start", "end", "bytes_up", "bytes_down")
    )
    today = _local_midnight(now)
    for back in range(HISTORY_DAYS, 0, -1):
        day = today - timedelta(days=back)
        weekend = day.weekday() >= 5
        for zone, (weekday_mb, weekend_mb) in HISTORY_MB.items():
            used = (weekend_mb if weekend else weekday_mb) * MB
            start, end = day + timedelta(hours=9), day + timedelta(hours=21)
            writer.writerow(
                (
                    f"demo-{day.date().isoformat()}-{zone}",
                    "",
                    "+85251011007",
                    HISTORY_PLMN[zone],
                    start.isoformat(),
                    end.isoformat(),
                    used // 10,
                    used - used // 10,
                )
            )
    return out.getvalue().encode()
