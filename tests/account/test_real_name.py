"""Real-name records (实名): registered once per line, kept as a digest, shown only masked."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import inspect, select

from tests import factories as f
from tests.account.factories import assert_problem
from tongka import demo
from tongka.account import lines
from tongka.account.models import RealNameRecord
from tongka.db import transaction

SPARE_HK = "+85251031021"  # an unbound line of src/tongka/demo/lines.csv
OTHER_SPARE_HK = "+85251061042"


@dataclass(frozen=True)
class Document:
    type: str
    number: str
    country: str | None
    holder: str
    masked_number: str
    masked_holder: str
    secrets: tuple[str, ...]  # none of these may appear anywhere in an answer

    def body(self) -> dict[str, str | None]:
        return {
            "document_type": self.type,
            "document_number": self.number,
            "holder_name": self.holder,
            "document_country": self.country,
        }


HKID = Document(
    "hkid",
    "A123456(3)",
    None,
    "Chan Tai Man",
    "A******3",
    "C*** T** M**",
    ("A123456(3)", "A1234563", "123456", "Chan", "Tai", "Man"),
)
CN_ID = Document(
    "cn_resident_id",
    "11010519491231002x",
    None,
    "张三丰",
    "11**************2X",
    "张**",
    ("11010519491231002X", "11010519491231002x", "19491231", "张三丰", "三丰"),
)
PASSPORT = Document(
    "passport",
    "E1234-5678",
    "cn",
    "Wang Xiaoming",
    "E*******8",
    "W*** X*******",
    ("E12345678", "E1234-5678", "12345678", "Wang", "Xiaoming"),
)
# The mainland's exit-entry permit for Hong Kong and Macao: the mainland's alone (CN is kept
# whatever the body says).
EXIT_PERMIT = Document(
    "cn_exit_permit",
    "c1234 5678",
    "cn",
    "李小龙",
    "C*******8",
    "李**",
    ("C12345678", "c1234 5678", "12345678", "李小龙", "小龙"),
)


@pytest.fixture
def owner(client, sessions) -> tuple[dict[str, str], str]:  # type: ignore[no-untyped-def]
    """A subscriber's auth headers and the id of the line they bound (the demo inventory, no demo account)."""
    with transaction(sessions) as session:
        assert not lines.import_csv_text(session, demo.LINES_CSV.read_text()).errors
    headers = f.subscriber(client)
    return headers, f.bind(client, headers, SPARE_HK)["id"]


def put(client, headers: dict[str, str], line_id: str, body: dict[str, str | None]):  # type: ignore[no-untyped-def]
    return client.put(f"/api/v1/lines/{line_id}/real-name", json=body, headers=headers)


def record_of(sessions, line_id: str) -> RealNameRecord | None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.scalar(select(RealNameRecord).where(RealNameRecord.line_id == uuid.UUID(line_id)))


def assert_nothing_revealed(text: str, document: Document) -> None:
    for secret in document.secrets:
        assert secret not in text, f"{secret!r} revealed in {text}"


@pytest.mark.parametrize("document", [HKID, CN_ID, PASSPORT, EXIT_PERMIT], ids=lambda d: d.type)
def test_real_name_is_registered_and_shown_masked_only(
    client, sessions, owner, document: Document
) -> None:
    headers, line_id = owner
    r = put(client, headers, line_id, document.body())
    assert r.status_code == 201, r.text
    line = r.json()
    assert line["id"] == line_id and SPARE_HK in line["numbers"]
    assert line["real_name"] == {
        "document_type": document.type,
        "document_country": document.country.upper() if document.country else None,
        "document_number": document.masked_number,
        "holder_name": document.masked_holder,
    }
    assert_nothing_revealed(r.text, document)

    listed = client.get("/api/v1/lines", headers=headers)
    assert [x["real_name"] for x in listed.json()] == [line["real_name"]]
    assert_nothing_revealed(listed.text, document)
    single = client.get(f"/api/v1/lines/{line_id}", headers=headers)
    assert single.json() == line
    assert_nothing_revealed(single.text, document)

    # the database keeps keyed digests and the masked forms, never the number or the name
    record = record_of(sessions, line_id)
    assert record is not None and record.source == "app"
    assert record.document_number_masked == document.masked_number
    assert record.holder_name_masked == document.masked_holder
    for digest in (record.document_number_digest, record.holder_name_digest):
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
    text_columns = [
        c.key for c in inspect(RealNameRecord).column_attrs if not c.key.endswith(("_digest", "id"))
    ]
    assert_nothing_revealed(" ".join(str(getattr(record, key)) for key in text_columns), document)


def test_holder_name_spacing_is_tidied(client, owner) -> None:
    headers, line_id = owner
    r = put(client, headers, line_id, {**HKID.body(), "holder_name": "  Chan   Tai\tMan "})
    assert r.status_code == 201, r.text
    assert r.json()["real_name"]["holder_name"] == "C*** T** M**"


@pytest.mark.parametrize(
    ("document_type", "number", "holder"),
    [
        ("hkid", "A123456(4)", "Chan Tai Man"),  # wrong check digit
        ("hkid", "11010519491231002X", "Chan Tai Man"),  # a mainland ID is not an HKID
        ("cn_resident_id", "110105194912310021", "张三丰"),  # wrong checksum
        ("cn_resident_id", "A123456(3)", "张三丰"),
        ("passport", "E12#4567", "Wang Xiaoming"),
        ("hkid", "A123456(3)", "   "),  # no name
    ],
)
def test_invalid_document_is_422_and_records_nothing(
    client, sessions, owner, document_type, number, holder
) -> None:
    headers, line_id = owner
    r = put(
        client,
        headers,
        line_id,
        {"document_type": document_type, "document_number": number, "holder_name": holder},
    )
    assert_problem(r, 422, "invalid_document")
    assert record_of(sessions, line_id) is None
    assert client.get(f"/api/v1/lines/{line_id}", headers=headers).json()["real_name"] is None
    # and the line can still be registered properly
    assert put(client, headers, line_id, HKID.body()).status_code == 201


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"document_type": "driving_licence"}, "document_type"),
        ({"document_country": "CHN"}, "document_country"),
        ({"document_number": "A12"}, "document_number"),
        ({"holder_name": ""}, "holder_name"),
    ],
)
def test_malformed_real_name_body_is_a_validation_error(
    client, sessions, owner, change, field
) -> None:
    headers, line_id = owner
    problem = assert_problem(
        put(client, headers, line_id, {**PASSPORT.body(), **change}), 422, "validation_error"
    )
    assert [e["field"] for e in problem["errors"]] == [field]
    assert record_of(sessions, line_id) is None


def test_a_second_real_name_is_409_and_changes_nothing(client, sessions, owner) -> None:
    headers, line_id = owner
    first = put(client, headers, line_id, HKID.body())
    assert first.status_code == 201, first.text
    before = record_of(sessions, line_id)

    for document in (PASSPORT, HKID):
        assert_problem(put(client, headers, line_id, document.body()), 409, "real_name_exists")
    after = record_of(sessions, line_id)
    assert after is not None and before is not None
    assert (after.id, after.document_type, after.document_number_digest) == (
        before.id,
        before.document_type,
        before.document_number_digest,
    )
    assert (
        client.get(f"/api/v1/lines/{line_id}", headers=headers).json()["real_name"]
        == first.json()["real_name"]
    )


def test_anothers_line_is_404_like_no_line(client, sessions, owner) -> None:
    _headers, line_id = owner
    stranger = f.subscriber(client)
    f.bind(client, stranger, OTHER_SPARE_HK)  # a stranger with a line of their own

    nobodys = assert_problem(
        put(client, stranger, str(uuid.uuid4()), HKID.body()), 404, "line_not_found"
    )
    assert (
        assert_problem(put(client, stranger, line_id, HKID.body()), 404, "line_not_found")
        == nobodys
    )
    assert record_of(sessions, line_id) is None
    assert_problem(put(client, {}, line_id, HKID.body()), 401, "not_authenticated")


@pytest.mark.parametrize("document", [HKID, CN_ID, PASSPORT], ids=lambda d: d.type)
def test_document_matches_the_registered_document_only(
    client, sessions, settings, owner, document: Document
) -> None:
    headers, line_id = owner
    assert put(client, headers, line_id, document.body()).status_code == 201
    record = record_of(sessions, line_id)
    assert record is not None
    secret = settings.secret_key.get_secret_value()

    assert lines.document_matches(record, document.type, document.number, secret)
    # the same document written another way still matches
    respelled = document.number.lower().replace("(", "").replace(")", "").replace("-", " ")
    assert lines.document_matches(record, document.type, respelled, secret)

    others = {
        "hkid": [("hkid", "G123456(A)"), ("hkid", "AB987654(3)"), ("passport", "A1234563")],
        "cn_resident_id": [
            ("cn_resident_id", "360426199101010071"),
            ("passport", "11010519491231002X"),
        ],
        "passport": [("passport", "E12345679"), ("passport", "E1234567"), ("hkid", "A123456(3)")],
    }[document.type]
    for other_type, other_number in others:
        assert not lines.document_matches(record, other_type, other_number, secret)
    assert not lines.document_matches(record, document.type, "not a document", secret)
    assert not lines.document_matches(
        record, document.type, document.number, secret + "x"
    )  # the key matters


def test_a_chinese_name_written_with_a_space_is_masked_too(client, owner) -> None:
    headers, line_id = owner
    r = put(client, headers, line_id, {**CN_ID.body(), "holder_name": "王 芳"})
    assert r.status_code == 201, r.text
    assert r.json()["real_name"]["holder_name"] != "王 芳"
