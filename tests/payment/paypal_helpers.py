"""PayPal webhooks made as PayPal documents them, with `cryptography` alone (none of tongka's provider code).

https://developer.paypal.com/api/rest/webhooks/rest/#link-selfverificationmethod: the signature is
base64 RSA-SHA256 (PKCS#1 v1.5) over "<transmission id>|<transmission time>|<webhook id>|<CRC32 of the body>".
"""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def signed(
    key: rsa.RSAPrivateKey,
    cert_url: str,
    webhook_id: str,
    event: dict[str, Any],
    transmission_time: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    transmission_id = str(uuid.uuid4())
    transmission_time = transmission_time or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}".encode()
    signature = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    return body, {
        "Content-Type": "application/json",
        "PAYPAL-TRANSMISSION-ID": transmission_id,
        "PAYPAL-TRANSMISSION-TIME": transmission_time,
        "PAYPAL-TRANSMISSION-SIG": signature,
        "PAYPAL-CERT-URL": cert_url,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
    }


def capture_completed(
    payment_id: str, order_id: str, value: str, currency: str = "HKD", event_id: str | None = None
) -> dict[str, Any]:
    """A PAYMENT.CAPTURE.COMPLETED event as PayPal's documentation shows one."""
    return {
        "id": event_id or f"WH-{uuid.uuid4().hex[:17].upper()}-{uuid.uuid4().hex[:17].upper()}",
        "event_version": "1.0",
        "create_time": "2025-01-02T03:04:05Z",
        "resource_type": "capture",
        "resource_version": "2.0",
        "event_type": "PAYMENT.CAPTURE.COMPLETED",
        "summary": f"Payment completed for {value} {currency}",
        "resource": {
            "id": "42311647XV020574X",
            "status": "COMPLETED",
            "amount": {"currency_code": currency, "value": value},
            "final_capture": True,
            "invoice_id": payment_id,
            "custom_id": payment_id,
            "supplementary_data": {"related_ids": {"order_id": order_id}},
            "create_time": "2025-01-02T03:04:05Z",
            "update_time": "2025-01-02T03:04:05Z",
            "links": [],
        },
        "links": [],
    }


FILLER = b"%%CRC32-FILLER%%"  # 16 bytes in a JSON string, rewritten by `same_crc32`


def same_crc32(template: bytes, target: int) -> bytes:
    """`template` with its FILLER rewritten so that the CRC32 of the whole is `target`: a forger's tool.

    CRC32 is affine over GF(2): for messages of one length, flipping a set of bits flips the CRC
    by the XOR of what each bit flips alone. Each filler byte starts as "A" (0x41) and may flip
    bits 1-4, which keeps it an odd byte in 0x41-0x5F (letters, "[", "]", "^", "_"): never a quote
    or a backslash, so the JSON stays valid. 64 free bits, solved for the 32 of the CRC.
    """
    at = template.index(FILLER)
    base = bytearray(template)
    base[at : at + len(FILLER)] = b"A" * len(FILLER)
    start = zlib.crc32(bytes(base))
    basis: list[
        tuple[int, int]
    ] = []  # (CRC flip, which bits make it), distinct leading bits, largest first
    for i in range(len(FILLER) * 4):
        flipped = bytearray(base)
        flipped[at + i // 4] ^= 2 << (i % 4)
        value, bits = zlib.crc32(bytes(flipped)) ^ start, 1 << i
        for b_value, b_bits in basis:
            if value ^ b_value < value:
                value, bits = value ^ b_value, bits ^ b_bits
        if value:
            basis = sorted([*basis, (value, bits)], reverse=True)
    want, bits = start ^ target, 0
    for b_value, b_bits in basis:
        if want ^ b_value < want:
            want, bits = want ^ b_value, bits ^ b_bits
    assert want == 0, "the filler's bits do not reach this CRC"
    for i in range(len(FILLER) * 4):
        if bits >> i & 1:
            base[at + i // 4] ^= 2 << (i % 4)
    return bytes(base)
