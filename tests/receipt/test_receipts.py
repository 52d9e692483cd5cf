"""Receipts: one per succeeded payment, numbered per issuer, owner-only, signed and publicly verifiable."""

from __future__ import annotations

import base64
import json
import re
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import func, select
from tests import factories as f
from tests.factories import new_subscriber
from tests.payment.test_callbacks import CALLBACK, event, signed
from tests.receipt.conftest import receipts_of

from tongka.db import transaction
from tongka.money import GB
from tongka.notify.models import OutboxMessage
from tongka.receipt import service as receipts
from tongka.receipt.models import Receipt
from tongka.renewal import flow

NUMBER = re.compile(r"^ONL-\d{8}$")
GENUINE = "Genuine receipt"
NOT_GENUINE = "NOT a genuine tongka receipt — it was altered or not issued by tongka"

pytestmark = pytest.mark.usefixtures("generic_sandbox")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def receipt_count(sessions, order_id: str | None = None) -> int:  # type: ignore[no-untyped-def]
    query = select(func.count()).select_from(Receipt)
    if order_id:
        query = query.where(Receipt.order_id == uuid.UUID(order_id))
    with sessions() as s:
        return s.scalar(query) or 0


def emails_to(sessions, address: str) -> list[OutboxMessage]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        query = select(OutboxMessage).where(
            OutboxMessage.channel == "email", OutboxMessage.to == address
        )
        return list(s.scalars(query))


def verdict(client, c: str, s: str, language: str = "en") -> str:  # type: ignore[no-untyped-def]
    r = client.get(
        "/receipts/verify", params={"c": c, "s": s}, headers={"Accept-Language": language}
    )
    assert r.status_code == 200
    found = re.search(r'data-verdict="([a-z-]+)"', r.text)
    assert found, r.text
    return found.group(1)


def test_the_test_settings_carry_a_signing_key(settings) -> None:
    assert settings.receipt_signing_key is not None
    assert len(base64.b64decode(settings.receipt_signing_key.get_secret_value())) == 32


def test_a_paid_order_gets_exactly_one_receipt(client, sessions, owner, paid) -> None:
    order, receipt = paid
    assert NUMBER.match(receipt["number"])
    assert receipt["number"] == "ONL-00000002"  # the demo subscriber's renewal had the first
    assert receipt_count(sessions, order["id"]) == 1
    assert (
        receipt["content"]["order_id"] == order["id"]
        and receipt["payment_id"] == order["payment"]["id"]
    )
    r = client.get(f"/api/v1/receipts/{receipt['number']}", headers=owner.headers)
    assert r.status_code == 200 and r.json() == receipt
    # Unpaid and failed orders have none.
    unpaid = f.order(client, owner.headers, owner.line["id"])
    failed = f.order(client, owner.headers, owner.line["id"])
    f.pay(client, failed["payment"]["id"], outcome="failed")
    assert receipt_count(sessions, unpaid["id"]) == receipt_count(sessions, failed["id"]) == 0


def test_a_duplicate_callback_makes_no_second_receipt(client, sessions, settings, owner) -> None:
    order = f.order(client, owner.headers, owner.line["id"])
    f.pay(client, order["payment"]["id"])
    f.pay(client, order["payment"]["id"])  # the provider's retry: the same event
    body = event(order)  # a second success event with a new id
    assert client.post(CALLBACK, content=body, headers=signed(settings, body)).status_code == 200
    assert receipt_count(sessions, order["id"]) == 1
    assert len(emails_to(sessions, f"{owner.username}@example.com")) == 1


def test_issuing_twice_returns_the_first_receipt(sessions, signing_key, paid) -> None:
    _order, receipt = paid
    with transaction(sessions) as s:
        first = s.get(Receipt, uuid.UUID(receipt["id"]))
        assert first is not None
        from tongka.payment.models import Payment

        payment = s.get(Payment, first.payment_id)
        again = flow.issue_receipt(s, payment, signing_key=signing_key)  # type: ignore[arg-type]
        assert again.id == first.id and again.number == first.number
    assert receipt_count(sessions) == 2  # the demo's and this one


def test_a_payment_for_a_cancelled_order_still_gets_a_receipt(client, sessions, owner) -> None:
    order = f.order(client, owner.headers, owner.line["id"])
    assert (
        client.post(f"/api/v1/orders/{order['id']}/cancel", headers=owner.headers).status_code
        == 200
    )
    f.pay(client, order["payment"]["id"])  # the money was taken all the same
    assert receipt_count(sessions, order["id"]) == 1


def test_the_content_shows_the_breakdown(client, owner, paid) -> None:
    _order, receipt = paid
    content = receipt["content"]
    assert content["number"] == receipt["number"] and content["issuer"] == "online"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", content["issued_at"])
    assert content["pack"] == {
        "code": "hk-5gb-30d",
        "names": {
            "en": "Hong Kong 5 GB · 30 days",
            "zh-Hans": "香港 5 GB · 30 天",
            "zh-Hant": "香港 5 GB · 30 天",
        },
        "zone": "hk",
        "volume_bytes": 5 * GB,
        "validity_days": 30,
    }
    assert content["price"] == {
        "list": {"amount": 5800, "currency": "HKD"},
        "offers": [],
        "subtotal": {"amount": 5800, "currency": "HKD"},
        "total": {"amount": 5800, "currency": "HKD"},
        "bonus_bytes": 0,
        "paid": {"amount": 5800, "currency": "HKD"},
    }  # no exchange rate when nothing was converted, no offers when none ran
    assert content["payment"]["method"] == "alipay" and content["payment"]["provider"] == "sandbox"
    assert content["payment"]["reference"]
    assert content["channel"] == "app" and "store" not in content and "staff" not in content
    # The line's numbers, masked in the middle: the receipt may be shown to a third party.
    assert len(content["lines"]) == len(owner.line["numbers"]) >= 1
    for shown, full in zip(content["lines"], owner.line["numbers"], strict=True):
        assert full not in receipt["signed_content"] and "*" in shown and shown.endswith(full[-4:])
    assert receipts.mask_number("+85251231007") == "+852 51**1007"
    assert receipts.mask_number("+8613812345678") == "+86 138****5678"


def test_a_receipt_in_the_other_currency_shows_the_rate(client, sessions, owner) -> None:
    f.hkd_only_pack(sessions, 2350)
    order = f.order(client, owner.headers, owner.line["id"], code="hk-only-2gb", currency="CNY")
    f.pay(client, order["payment"]["id"])
    [receipt] = [r for r in receipts_of(client, owner) if r["order_id"] == order["id"]]
    assert receipt["content"]["price"] == {
        "list": {"amount": 2350, "currency": "HKD"},
        "offers": [],
        "subtotal": {"amount": 2350, "currency": "HKD"},
        "exchange_rate": {"base": "HKD", "quote": "CNY", "rate": "0.923400"},
        "total": {"amount": 2170, "currency": "CNY"},
        "bonus_bytes": 0,
        "paid": {"amount": 2170, "currency": "CNY"},
    }
    [email] = emails_to(sessions, f"{owner.username}@example.com")
    assert (
        "List price: HK$23.50" in email.body and "Exchange rate: 1 HKD = 0.923400 CNY" in email.body
    )
    assert "Paid: CN¥21.70 by Alipay" in email.body
    page = client.get(urlsplit(receipt["page_url"]).path)
    assert "1 HKD = 0.923400 CNY" in page.text


def test_receipts_are_for_their_owner_only(client, sessions, owner, paid) -> None:
    _order, receipt = paid
    stranger = new_subscriber(client, sessions)
    mine = client.get(f"/api/v1/receipts/{receipt['number']}", headers=owner.headers)
    assert mine.status_code == 200
    assert (
        client.get(
            f"/api/v1/receipts/{receipt['number'].lower()}", headers=owner.headers
        ).status_code
        == 200
    )
    theirs = client.get(f"/api/v1/receipts/{receipt['number']}", headers=stranger.headers)
    unknown = client.get("/api/v1/receipts/ONL-99999999", headers=stranger.headers)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == unknown.json() and theirs.json()["code"] == "receipt_not_found"
    assert receipts_of(client, stranger) == []
    assert (
        client.get("/api/v1/receipts/ONL-00000001").status_code == 401
    )  # the demo's, without a token
    # The owner's list, newest first.
    second = f.order(client, owner.headers, owner.line["id"], code="hk-1gb-7d")
    f.pay(client, second["payment"]["id"])
    assert [r["order_id"] for r in receipts_of(client, owner)] == [
        second["id"],
        receipt["order_id"],
    ]


def test_the_signature_verifies_with_the_published_key_alone(client, paid) -> None:
    """As a customer's lawyer would: only the QR's link, the published PEM and `cryptography`."""
    _order, receipt = paid
    r = client.get("/receipts/public-key")
    assert r.status_code == 200 and r.text.startswith("-----BEGIN PUBLIC KEY-----")
    key = load_pem_public_key(r.content)
    assert isinstance(key, Ed25519PublicKey)

    query = parse_qs(urlsplit(receipt["verify_url"]).query)
    assert receipt["verify_url"].startswith("http://testserver/receipts/verify?c=")
    content, signature = unb64url(query["c"][0]), unb64url(query["s"][0])
    key.verify(signature, content)  # raises if not genuine
    assert content == receipt["signed_content"].encode()
    assert json.loads(content) == receipt["content"]
    # Canonical: sorted keys, compact separators, UTF-8.
    assert (
        content
        == json.dumps(
            receipt["content"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    )
    with pytest.raises(InvalidSignature):
        key.verify(signature, content.replace(b'"amount":5800', b'"amount":580'))


def test_any_changed_byte_makes_the_receipt_not_genuine(client, signing_key, paid) -> None:
    _order, receipt = paid
    content, signature = receipt["signed_content"].encode(), unb64url(receipt["signature"])
    key = receipts.public_key(signing_key)
    assert receipts.verify(content, signature, key)
    for i in range(len(content)):  # every byte of the content, and of the signature
        assert not receipts.verify(
            content[:i] + bytes([content[i] ^ 0x01]) + content[i + 1 :], signature, key
        )
    for i in range(len(signature)):
        assert not receipts.verify(
            content, signature[:i] + bytes([signature[i] ^ 0x80]) + signature[i + 1 :], key
        )

    # The public page, as the QR code opens it.
    c, s = b64url(content), b64url(signature)
    r = client.get("/receipts/verify", params={"c": c, "s": s})
    assert GENUINE in r.text and receipt["number"] in r.text and NOT_GENUINE not in r.text
    for i in sorted(
        {0, 1, len(content) // 3, len(content) // 2, len(content) - 2, len(content) - 1}
    ):
        changed = content[:i] + bytes([content[i] ^ 0x01]) + content[i + 1 :]
        assert verdict(client, b64url(changed), s) == "not-genuine", i
    for i in (0, 31, 32, 63):
        changed = signature[:i] + bytes([signature[i] ^ 0x01]) + signature[i + 1 :]
        assert verdict(client, c, b64url(changed)) == "not-genuine", i
    tampered = content.replace(b'"amount":5800', b'"amount":9800')
    assert tampered != content
    r = client.get("/receipts/verify", params={"c": b64url(tampered), "s": s})
    assert NOT_GENUINE in r.text and GENUINE not in r.text
    for c_, s_ in (("", ""), ("!!", s), (c, "not-base64!"), (c + "A", s)):
        assert verdict(client, c_, s_) == "not-genuine"


def test_the_verdict_speaks_the_readers_language(client, paid) -> None:
    _order, receipt = paid
    query = parse_qs(urlsplit(receipt["verify_url"]).query)
    c, s = query["c"][0], query["s"][0]
    good = client.get(
        "/receipts/verify", params={"c": c, "s": s}, headers={"Accept-Language": "zh-HK"}
    )
    assert "收據真確有效" in good.text and good.headers["content-language"] == "zh-Hant"
    # Change the first character for sure: a fixed suffix such as "AA" can be what the signature already ends in.
    forged = ("B" if s[0] == "A" else "A") + s[1:]
    bad = client.get(
        "/receipts/verify", params={"c": c, "s": forged}, headers={"Accept-Language": "zh-CN"}
    )
    assert "这不是真实的 tongka 收据" in bad.text


def test_the_printable_page_renders_with_its_qr_code(client, paid) -> None:
    _order, receipt = paid
    assert receipt["page_url"] == f"http://testserver/receipts/{receipt['id']}"
    r = client.get(f"/receipts/{receipt['id']}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<svg" in r.text and 'class="segno"' in r.text
    assert (
        receipt["number"] in r.text
        and "HK$58.00" in r.text
        and receipt["content"]["lines"][0] in r.text
    )
    assert receipt["verify_url"].replace("&", "&amp;") in r.text
    assert client.get(f"/receipts/{uuid.uuid4()}").status_code == 404
    assert client.get("/receipts/not-a-receipt").status_code == 404


def test_the_email_is_in_the_accounts_language(client, sessions, demo) -> None:
    who = new_subscriber(client, sessions, language="zh-Hant")
    order = f.order(client, who.headers, who.line["id"], code="both-5gb-30d")
    f.pay(client, order["payment"]["id"])
    [receipt] = receipts_of(client, who)
    [email] = emails_to(sessions, f"{who.username}@example.com")
    assert email.language == "zh-Hant"
    assert email.subject == f"您的數據已到賬 · 收據 {receipt['number']}"
    assert "數據已到賬" in email.body and "內地+香港 5 GB · 30 天" in email.body
    assert "標價：HK$98.00" in email.body and "實付：HK$98.00（支付寶）" in email.body
    assert "匯率" not in email.body and receipt["content"]["lines"][0] in email.body


def test_store_receipts_are_numbered_apart_and_name_the_store(
    sessions, signing_key, client, owner
) -> None:
    from tongka.payment.models import Payment

    made = []
    for _ in range(2):
        order = f.order(client, owner.headers, owner.line["id"])
        with transaction(sessions) as s:
            payment = s.get(Payment, uuid.UUID(order["payment"]["id"]))
            flow.confirm(
                s, payment, "succeeded", payment.amount, payment.currency
            )  # no key: no receipt
            made.append(
                flow.issue_receipt(
                    s,
                    payment,
                    signing_key=signing_key,  # type: ignore[arg-type]
                    issuer="mk01",
                    store="MK01 Mong Kok",
                    staff="staff-7",
                )
            )
    assert [r.number for r in made] == ["MK01-00000001", "MK01-00000002"]
    assert made[0].content["store"] == "MK01 Mong Kok" and made[0].content["staff"] == "staff-7"
    assert made[0].content["issuer"] == "mk01" and made[0].content["channel"] == "app"
    with (
        transaction(sessions) as s,
        pytest.raises(ValueError),
    ):  # a store code is lower-case letters and digits
        payment = s.get(Payment, made[0].payment_id)
        flow.issue_receipt(s, payment, signing_key=signing_key, issuer="Bad Store")  # type: ignore[arg-type]
