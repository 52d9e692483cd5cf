"""Every message is a template per language; SMS fit the segments they state; none asks for a secret back."""

from __future__ import annotations

import re

import pytest

from tongka.i18n import LANGUAGES
from tongka.notify import render

# Each template's longest values: what its SMS must still fit, what its email must render.
LONGEST = {
    "bind_code": {"code": "99999999", "minutes": 999},
    "receipt": {
        "number": "MK01-99999999",
        "volume": 1536 * 1024**3,
        "lines": ["+85299999999", "+8619999999999"],
        "pack": "Mainland + Hong Kong 100 GB · 365 days",
        "days": 365,
        "breakdown": ["List price: HK$9,999.00", "Paid: HK$9,999.00 by WeChat Pay"],
        "issued_at": "2026-12-31T23:59:59Z",
    },
    "password_reset": {
        "username": "a" * 32,
        "link": "https://tongka.example/password/reset?token=" + "x" * 43,
        "minutes": 30,
    },
    "password_changed": {"username": "a" * 32, "changed_at": "2026-12-31T23:59:59Z"},
    "email_changed": {"username": "a" * 32, "new_email": "a***@example.com"},
    "alert_auto_renew_done": {
        "username": "a" * 32,
        "number": "+8619999999999",
        "pack": "Mainland + Hong Kong 100 GB · 365 days",
        "volume": "1023.99 GB",
        "amount": "HK$10,000.00",
    },
    "alert_auto_renew_failed": {
        "username": "a" * 32,
        "number": "+8619999999999",
        "reason": "cap",
        "paused": True,
        "amount": "HK$10,000.00",
        "cap": "HK$10,000.00",
    },
}
# The alerts' (tongka.alerts): every one names its line (`number`, `tail`), some a zone and volumes.
_LINE = {"username": "a" * 32, "number": "+8619999999999", "tail": "9999"}
_MOST = 1023 * 1024**3 + 1023 * 1024**2  # "1023.99 GB"
_MONEY = {"currency": "HKD"}
LONGEST |= {
    f"alert_{kind}": {**_LINE, **values}
    for kind, values in {
        "data_used_80": {"zone": "both", "total": _MOST, "left": _MOST},
        "data_used_90": {"zone": "both", "total": _MOST, "left": _MOST},
        "data_used_100": {"zone": "both", "total": _MOST, "left": 0},
        "data_expiring_3d": {"zone": "both", "left": _MOST, "expires_at": "2026-12-31T23:59:59Z"},
        "data_expiring_1d": {"zone": "both", "left": _MOST, "expires_at": "2026-12-31T23:59:59Z"},
        "overage_started": {"charged": 9_999_999, "cap": 9_999_999, **_MONEY},
        "overage_cap_reached": {"charged": 9_999_999, "cap": 9_999_999, **_MONEY},
        "renewal_confirmed": {"zone": "both", "volume": _MOST, "days": 365},
        "payment_failed": {"amount": 9_999_999, **_MONEY},
    }.items()
}
# Auto-renew's (tongka.renewal.autorenew): what it did, or why not (the cap, the wallet, the card).
LONGEST["alert_auto_renew_done"]["tail"] = "9999"
LONGEST["alert_auto_renew_failed"]["tail"] = "9999"
NEVER_ASK = {
    "en": "never ask",
    "zh-Hans": "绝不会",
    "zh-Hant": "絕不會",
}
# Words that would ask the reader to send something back.
ASKS_BACK = re.compile(r"reply|send (it|us)|回复|回覆|發送給我們|发送给我们", re.IGNORECASE)


def test_every_message_has_every_part_in_every_language() -> None:
    found = render.templates()
    email = {"subject", "txt", "html"}
    alert = email | {"sms"}
    assert found == {
        "bind_code": {"sms"},
        "receipt": email,
        "password_reset": email,
        "password_changed": alert,
        "email_changed": alert,
        # renewal_confirmed's email is the receipt's (alerts.Kind.email_elsewhere): an SMS only.
        "alert_renewal_confirmed": {"sms"},
        **{
            f"alert_{kind}": alert
            for kind in (
                "data_used_80",
                "data_used_90",
                "data_used_100",
                "data_expiring_3d",
                "data_expiring_1d",
                "overage_started",
                "overage_cap_reached",
                "payment_failed",
                "auto_renew_done",
                "auto_renew_failed",
            )
        },
    }
    for name, parts in found.items():
        for language in LANGUAGES:
            for part in parts:
                assert (render.DIRECTORY / name / f"{language}.{part}").is_file(), (
                    name,
                    language,
                    part,
                )
    assert set(LONGEST) == set(found)


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_sms_at_its_longest_fits_the_segments_it_states(language: str) -> None:
    for name, parts in render.templates().items():
        if "sms" not in parts:
            continue
        text = render.sms(name, language, **LONGEST[name])
        stated = render.stated_segments(name, language)
        counted = render.segments(text)
        assert counted.count <= stated, (name, language, counted, text)
        # Chinese needs UCS-2; English is kept to GSM-7 (a 【】 would double its cost).
        assert counted.encoding == ("gsm7" if language == "en" else "ucs2"), text


def test_segments_are_counted_as_an_smsc_counts_them() -> None:
    assert render.segments("a" * 160) == render.Segments("gsm7", 160, 1)
    assert render.segments("a" * 161).count == 2
    assert render.segments("a" * 306).count == 2 and render.segments("a" * 307).count == 3
    assert render.segments("[" * 80) == render.Segments("gsm7", 160, 1)  # two septets each
    assert render.segments("€" + "a" * 159).count == 2
    assert render.segments("验" * 70) == render.Segments("ucs2", 70, 1)
    assert render.segments("验" * 71).count == 2
    assert render.segments("验" * 134).count == 2 and render.segments("验" * 135).count == 3
    assert render.segments("a" * 69 + "【").encoding == "ucs2"
    assert render.segments("😀" * 35) == render.Segments("ucs2", 70, 1)  # two UTF-16 units each


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_warns_against_impostors_and_asks_nothing_back(language: str) -> None:
    for name, parts in render.templates().items():
        told: list[list[str]] = []
        if "sms" in parts:
            told.append([render.sms(name, language, **LONGEST[name])])
            assert "【tongka】" in told[-1][0] or told[-1][0].startswith("[tongka] ")  # the brand
        if "txt" in parts:
            mail = render.email(name, language, **LONGEST[name])
            told.append([mail.subject, mail.text, mail.html])
            assert "tongka 通卡" in mail.text and "tongka 通卡" in mail.html
        for texts in told:
            assert NEVER_ASK[language] in texts[-1], (name, language)
            for text in texts:
                assert not ASKS_BACK.search(text), (name, language, text)


def test_the_email_has_a_plain_text_twin_in_the_readers_language() -> None:
    mail = render.email("receipt", "zh-Hant", **LONGEST["receipt"])
    assert mail.subject == "您的數據已到賬 · 收據 MK01-99999999"
    for part in (mail.text, mail.html):
        assert "1.50 TB" not in part and "1536 GB" in part
        assert "+85299999999 / +8619999999999" in part
        assert "2027年1月1日" in part  # 23:59:59 UTC is the next morning in Hong Kong
        assert "Paid: HK$9,999.00 by WeChat Pay" in part
    assert '<html lang="zh-Hant">' in mail.html


def test_values_are_escaped_in_the_html_and_not_in_the_text() -> None:
    values = {**LONGEST["receipt"], "pack": "<script>alert(1)</script> & more"}
    mail = render.email("receipt", "en", **values)
    assert (
        "<script>" not in mail.html
        and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in mail.html
    )
    assert "<script>alert(1)</script> & more" in mail.text


def test_a_missing_value_fails_when_queued_not_as_a_blank() -> None:
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError):
        render.sms("bind_code", "en", code="12345678")


def test_an_unknown_language_gets_english() -> None:
    assert render.sms("bind_code", "fr", code="12345678", minutes=10).startswith(
        "[tongka] Your tongka code is 12345678."
    )
