"""The statement helpers of `tongka.db` that the charging batches stand on, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, event, select, update
from sqlalchemy.exc import IntegrityError, MultipleResultsFound, NoResultFound

from tests.charging import factories as f
from tongka.charging.models import ChargingAnswer, ChargingSession, Network, UsageDay
from tongka.db import (
    AnyOf,
    add_rows,
    direct,
    insert_rows,
    new_id,
    pipelined,
    transaction,
    update_rows,
)

T = datetime(2026, 12, 2, 4, 30, 15, 123456, tzinfo=UTC)


def _statements(session) -> list[str]:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    event.listen(session.get_bind(), "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_any_of_finds_the_rows_named_by_any_count_of_values_with_one_statement_text(
    session,
) -> None:
    f.ensure_networks(session)
    query = select(Network.plmn).where(AnyOf(Network.plmn, "plmns")).order_by(Network.plmn)
    seen = _statements(session)
    assert session.execute(query, {"plmns": ["460-00", "454-00", "999-99"]}).scalars().all() == [
        "454-00",
        "460-00",
    ]
    assert session.execute(query, {"plmns": ["454-12"]}).scalars().all() == ["454-12"]
    assert session.execute(query, {"plmns": []}).scalars().all() == []
    if (
        session.get_bind().dialect.name == "postgresql"
    ):  # one text, so one prepared statement and plan
        assert len(set(seen)) == 1 and "ANY" in seen[0]


def test_direct_statements_read_as_sqlalchemy_reads_them(session) -> None:
    f.ensure_networks(session)
    query = (
        select(Network.plmn, Network.zone, Network.active)
        .where(AnyOf(Network.plmn, "plmns"))
        .order_by(Network.plmn)
    )
    given = {"plmns": ["454-00", "460-01"]}
    execute = direct(session)
    assert list(execute(query, given).all()) == [
        tuple(r) for r in session.execute(query, given).all()
    ]
    assert list(execute(query, given).scalars().all()) == ["454-00", "460-01"]
    assert execute(query, {"plmns": ["454-00"]}).scalar_one() == "454-00"
    with pytest.raises(MultipleResultsFound):
        execute(query, given).scalar_one()
    with pytest.raises(NoResultFound):
        execute(query, {"plmns": []}).scalar_one()


def test_insert_rows_writes_every_column_type_back_as_given(session) -> None:
    f.ensure_networks(session)
    line = f.line(session)
    sessions = [  # the second ref holds what an array's text form would have to quote or escape
        {
            "id": new_id(),
            "line_id": line.id,
            "charging_data_ref": f"ref-{n}" + (' "q", \\{NULL} ' if n == 1 else ""),
            "plmn": "454-00",
            "zone": "hk",
            "status": "open",
            "released_at": None if n else T,
            "notify_uri": None,
            "create_key": None,
            "created_at": T,
        }
        for n in range(3)
    ]
    insert_rows(session, ChargingSession.__table__, sessions)
    answers = [
        {
            "charging_session_id": sessions[1]["id"],
            "invocation_sequence_number": 1,
            "status_code": 201,
            "answer": {},
            "created_at": T,
        },
        {
            "charging_session_id": sessions[0]["id"],
            "invocation_sequence_number": 2**40,
            "status_code": 200,
            "answer": {
                "units": [{"ratingGroup": 10, "grantedUnit": {"totalVolume": 4_194_304}}],
                "text": "是",
            },
            "created_at": T,
        },
        {
            "charging_session_id": sessions[0]["id"],
            "invocation_sequence_number": 3,
            "status_code": 204,
            "answer": None,
            "created_at": T,
        },
    ]
    insert_rows(session, ChargingAnswer.__table__, answers)
    insert_rows(session, ChargingAnswer.__table__, [])  # nothing to do
    session.expire_all()

    stored = session.scalars(
        select(ChargingSession).order_by(ChargingSession.charging_data_ref)
    ).all()
    assert [(x.id, x.charging_data_ref, x.released_at, x.created_at) for x in stored] == [
        (r["id"], r["charging_data_ref"], r["released_at"], T) for r in sessions
    ]
    kept = session.scalars(select(ChargingAnswer).order_by(ChargingAnswer.status_code)).all()
    assert [(a.invocation_sequence_number, a.status_code, a.answer) for a in kept] == [
        (2**40, 200, answers[1]["answer"]),
        (1, 201, {}),
        (3, 204, None),
    ]


def test_pipelined_writes_are_committed_together_or_not_at_all(sessions) -> None:
    with transaction(sessions) as session:
        f.ensure_networks(session)
        line = f.line(session)
    row = {
        "id": new_id(),
        "line_id": line.id,
        "plmn": "454-00",
        "zone": "hk",
        "status": "open",
        "released_at": None,
        "notify_uri": None,
        "create_key": None,
        "created_at": T,
    }
    with transaction(sessions) as session, pipelined(session):
        insert_rows(session, ChargingSession.__table__, [{**row, "charging_data_ref": "a"}])
        insert_rows(
            session, ChargingSession.__table__, [{**row, "id": new_id(), "charging_data_ref": "b"}]
        )
    with pytest.raises(IntegrityError), transaction(sessions) as session, pipelined(session):
        insert_rows(
            session, ChargingSession.__table__, [{**row, "id": new_id(), "charging_data_ref": "c"}]
        )
        insert_rows(
            session, ChargingSession.__table__, [{**row, "id": new_id(), "charging_data_ref": "a"}]
        )  # taken
        session.commit()
    with transaction(sessions) as session:
        refs = session.scalars(
            select(ChargingSession.charging_data_ref).order_by(ChargingSession.charging_data_ref)
        )
        assert refs.all() == ["a", "b"]


def test_direct_statements_take_the_values_written_in_them_and_the_callers(session) -> None:
    f.ensure_networks(session)
    line = f.line(session)
    ref = {
        "id": new_id(),
        "line_id": line.id,
        "charging_data_ref": "r",
        "plmn": "454-00",
        "zone": "hk",
        "status": "open",
        "released_at": None,
        "notify_uri": "http://smf.example/notify",
        "create_key": None,
        "created_at": T,
    }
    insert_rows(session, ChargingSession.__table__, [ref])
    table = ChargingSession.__table__
    release = (
        update(table)
        .where(table.c.charging_data_ref == bindparam("ref"))
        .values(status="released", notify_uri=None, released_at=bindparam("at"))
    )
    direct(session)(release, {"ref": "r", "at": T})
    session.expire_all()
    stored = session.scalars(select(ChargingSession)).one()
    assert (stored.status, stored.notify_uri, stored.released_at) == ("released", None, T)


def test_update_rows_sets_and_adds_by_key_and_add_rows_adds_or_inserts(session) -> None:
    f.ensure_networks(session)
    lines = [f.line(session) for _ in range(2)]
    made = [
        {
            "id": new_id(),
            "line_id": line.id,
            "charging_data_ref": f"u{n}",
            "plmn": "454-00",
            "zone": "hk",
            "status": "open",
            "released_at": None,
            "notify_uri": None,
            "create_key": None,
            "created_at": T,
        }
        for n, line in enumerate(lines)
    ]
    insert_rows(session, ChargingSession.__table__, made)
    update_rows(
        session,
        ChargingSession.__table__,
        "id",
        [{"id": made[1]["id"], "status": "released", "released_at": T}],
    )
    update_rows(session, ChargingSession.__table__, "id", [])  # nothing to do
    day = T.date()
    usage = [
        {
            "id": new_id(),
            "line_id": lines[0].id,
            "day": day,
            "zone": "hk",
            "plmn": "454-00",
            "bytes": 5,
        }
    ]
    add_rows(session, UsageDay, ("line_id", "day", "zone", "plmn"), ("bytes",), usage)
    add_rows(
        session,
        UsageDay,
        ("line_id", "day", "zone", "plmn"),
        ("bytes",),
        [{**usage[0], "id": new_id(), "bytes": 7}],
    )
    update_rows(
        session, UsageDay.__table__, "id", [{"id": usage[0]["id"], "bytes": 100}], add=("bytes",)
    )
    session.expire_all()
    assert [
        (x.charging_data_ref, x.status, x.released_at)
        for x in session.scalars(
            select(ChargingSession).order_by(ChargingSession.charging_data_ref)
        )
    ] == [("u0", "open", None), ("u1", "released", T)]
    assert session.scalars(select(UsageDay.bytes)).all() == [
        112
    ]  # 5, 7 added on the same day, then 100 more


def test_a_failed_statement_names_none_of_its_values_so_its_log_line_cannot_leak_one(
    tmp_path,
) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from tongka.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'leak.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE outbox (body TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO outbox VALUES (:body)"), {"body": "your code is 31415926"})
    with pytest.raises(IntegrityError) as failed, engine.begin() as conn:
        conn.execute(text("INSERT INTO outbox VALUES (:body)"), {"body": "your code is 31415926"})
    engine.dispose()
    assert "31415926" not in str(failed.value)
