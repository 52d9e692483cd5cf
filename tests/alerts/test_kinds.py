"""Every alert kind, fired in every language by both channels: once, branded, in that language."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.alerts.helpers import events, owner, sent
from tests.notify.test_templates import LONGEST, NEVER_ASK
from tongka.alerts import service
from tongka.i18n import LANGUAGES

# A word of each kind's SMS in each language: the message is that kind's, in that language.
SAYS = {
    "en": {"data_used_100": "data used up", "overage_cap_reached": "overage cap"},
    "zh-Hans": {"data_used_100": "流量已用完", "overage_cap_reached": "超额已达上限"},
    "zh-Hant": {"data_used_100": "數據已用完", "overage_cap_reached": "超額已達上限"},
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_kind_fires_once_by_sms_and_email_in_the_readers_language(
    sessions: sessionmaker[Session], language: str
) -> None:
    with sessions() as session:
        account, line = owner(session, language)
        for kind in service.KINDS:
            service.choose(session, account.id, kind, "both")
        for kind, spec in service.KINDS.items():
            values = {
                k: v
                for k, v in LONGEST[spec.messages].items()
                if k not in ("username", "number", "tail")
            }
            assert service.fire(session, account=account, kind=kind, key="k", line=line, **values)
            assert (
                service.fire(session, account=account, kind=kind, key="k", line=line, **values)
                is None
            )
        assert len(events(session, account)) == len(service.KINDS)
        messages = sent(session, account)
        by_kind: dict[str, list[str]] = {}
        for message in messages:
            by_kind.setdefault(message.template, []).append(message.channel)
        for kind, spec in service.KINDS.items():
            expected = ["sms"] if spec.email_elsewhere else ["email", "sms"]
            assert sorted(by_kind[spec.messages]) == expected, kind
        for message in messages:
            assert NEVER_ASK[language] in message.body, message.template
            if message.channel == "sms":
                assert message.to == line.hk_number
                assert message.body.startswith("[tongka] " if language == "en" else "【tongka】")
            else:
                assert message.to == account.email and message.html and message.language == language
        sms = {m.template: m.body for m in messages if m.channel == "sms"}
        for kind, word in SAYS[language].items():
            assert word in sms[f"alert_{kind}"], (kind, sms[f"alert_{kind}"])
        session.commit()
