"""What tongka puts in and reads out of SMPP 3.4 PDUs (smpplib's classes): a text's encoding and
parts, addresses, delivery receipts, and what the SMSC's status codes mean for a message.

See notify/sms.py for the sender that uses them.
"""

from __future__ import annotations

import re
from typing import Any

import smpplib.consts as c
import smpplib.gsm

# esm_class bits 2-5 = 0001: the deliver_sm is an SMSC delivery receipt (SMPP 3.4 §5.2.12).
SMSC_DELIVERY_RECEIPT = 0x04
RECEIPT_TEXT = re.compile(rb"\bid:(\S+).*?\bstat:([A-Z]+)", re.IGNORECASE | re.DOTALL)
# SMPP 3.4 Appendix B's final states, as the receipt text spells them, and the message_state TLV.
OUTCOME = {
    "DELIVRD": "delivered",
    "UNDELIV": "undeliverable",
    "EXPIRED": "undeliverable",
    "DELETED": "undeliverable",
    "REJECTD": "undeliverable",
}
STATE_TEXT = {
    c.SMPP_MESSAGE_STATE_ENROUTE: "ENROUTE",
    c.SMPP_MESSAGE_STATE_DELIVERED: "DELIVRD",
    c.SMPP_MESSAGE_STATE_EXPIRED: "EXPIRED",
    c.SMPP_MESSAGE_STATE_DELETED: "DELETED",
    c.SMPP_MESSAGE_STATE_UNDELIVERABLE: "UNDELIV",
    c.SMPP_MESSAGE_STATE_ACCEPTED: "ACCEPTD",
    c.SMPP_MESSAGE_STATE_UNKNOWN: "UNKNOWN",
    c.SMPP_MESSAGE_STATE_REJECTED: "REJECTD",
}
# submit_sm answers that no retry will change (the message as it is is wrong); every other error
# (ESME_RTHROTTLED, ESME_RMSGQFUL, ESME_RSYSERR, vendor codes…) is worth another try later.
PERMANENT = {
    c.SMPP_ESME_RINVDSTADR,
    c.SMPP_ESME_RINVDSTTON,
    c.SMPP_ESME_RINVDSTNPI,
    c.SMPP_ESME_RINVSRCADR,
    c.SMPP_ESME_RINVSRCTON,
    c.SMPP_ESME_RINVSRCNPI,
    c.SMPP_ESME_RINVMSGLEN,
    c.SMPP_ESME_RINVESMCLASS,
    c.SMPP_ESME_RINVSERTYP,
    c.SMPP_ESME_RX_P_APPN,
    c.SMPP_ESME_RX_R_APPN,
}
BIND_REFUSALS = {c.SMPP_ESME_RINVPASWD, c.SMPP_ESME_RINVSYSID, c.SMPP_ESME_RBINDFAIL}


def status_name(status: int) -> str:
    return str(c.DESCRIPTIONS.get(status, "unknown error")) + f" (0x{status:08x})"


def split(text: str) -> tuple[list[bytes], int, int]:
    """(parts, data_coding, esm_class) for `text`: GSM 7-bit if it fits the alphabet, else UCS-2."""
    parts, coding, esm_class = smpplib.gsm.make_parts(text)
    if coding == c.SMPP_ENCODING_DEFAULT and len(parts) > 1 and any(b"\x1b" in p for p in parts):
        parts, coding, esm_class = smpplib.gsm.make_parts(text, c.SMPP_ENCODING_ISO10646)
    return list(parts), int(coding), int(esm_class)


def address(number: str) -> tuple[int, int, str]:
    """(TON, NPI, digits) of an address: +E.164 is international, letters are alphanumeric."""
    if number.startswith("+") and number[1:].isdigit():
        return c.SMPP_TON_INTL, c.SMPP_NPI_ISDN, number[1:]
    if number.isdigit():
        return c.SMPP_TON_UNK, c.SMPP_NPI_ISDN, number
    return c.SMPP_TON_ALNUM, c.SMPP_NPI_UNK, number


def parse_receipt(pdu: Any) -> tuple[str, str] | None:
    """(receipted message id, stat) of a delivery receipt: its TLVs if present, else its text."""
    message_id, state = pdu.receipted_message_id, pdu.message_state
    if message_id and state in STATE_TEXT:
        return text_of(message_id), STATE_TEXT[state]
    found = RECEIPT_TEXT.search(pdu.short_message or b"")
    if found is None:
        return None
    return text_of(message_id or found[1]), found[2].decode("ascii").upper()


def text_of(value: bytes | str) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value
