"""The staff pages' authorisation matrix: every staff page × every role, and a subscriber.

Each page states its roles with a dependency (`web.CounterDep`, `ManagerDep`, `AdminDep`, or any
staff member); this walks every page of the app, reads the roles it states, and checks that each
role outside them is refused and each inside is let in. Another store's objects are each area's
own tests (tests/counter, tests/console)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests import factories as f
from tests.test_routes import STAFF_PREFIXES, page_routes
from tests.web.helpers import ACCEPT_HTML, form_token
from tongka import web

ROLES = ("agent", "manager", "admin")
OPEN = {"/staff/login", "/staff/enrol", "/staff/logout"}


def stated_roles(endpoint_route: Any) -> tuple[str, ...]:
    """The roles a route's dependencies let in (all three for `StaffDep` alone)."""

    def walk(dependant: Any) -> Any:
        for dep in dependant.dependencies:
            if isinstance(dep.call, web.RoleGate):
                yield dep.call.roles
            yield from walk(dep)

    found = list(walk(endpoint_route.dependant))
    return found[0] if found else ROLES


def staff_routes(app: Any) -> list[tuple[str, str, tuple[str, ...]]]:
    from fastapi.routing import APIRoute

    def walk(routes: Any, prefix: str) -> Any:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                yield from walk(inner.routes, prefix + route.include_context.prefix)
            elif isinstance(route, APIRoute):
                yield prefix + route.path, route

    found = []
    for path, route in walk(app.routes, ""):
        if path.startswith(STAFF_PREFIXES) and path not in OPEN:
            for method in sorted(route.methods):
                found.append((method, path, stated_roles(route)))
    return found


def with_ids(path: str) -> str:
    """Each {parameter} of a path as a new id: an object no one has."""
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        path = path[:start] + str(uuid.uuid4()) + path[end + 1 :]
    return path


def test_every_staff_page_is_found(app) -> None:  # type: ignore[no-untyped-def]
    paths = {path for _m, path, _r in staff_routes(app)}
    assert "/console" in paths and "/staff" in paths
    assert len(paths) <= len({p for _m, p, _e in page_routes(app)})


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_its_pages_and_no_other(client, sessions, settings, app, role) -> None:  # type: ignore[no-untyped-def]
    f.staff(client, sessions, settings, role=role)
    token = form_token(client, "/staff/login")
    checked = 0
    for method, path, roles in staff_routes(app):
        if method == "POST":
            if role not in roles:  # refused whatever the form holds (each area tests its forms)
                r = client.post(with_ids(path), data={"csrf_token": token}, headers=ACCEPT_HTML)
                assert r.status_code == 403 and "Your role does not allow this." in r.text, (
                    role,
                    path,
                    r.status_code,
                )
            continue
        r = client.get(with_ids(path), headers=ACCEPT_HTML, follow_redirects=False)
        if role in roles:
            assert r.status_code in (200, 303, 404, 422), (role, path, r.status_code)
            if r.status_code == 303:
                assert not r.headers["location"].startswith("/staff/login"), (role, path)
        else:
            assert r.status_code == 403, (role, path, r.status_code)
        checked += 1
    assert checked >= 2


def test_a_subscriber_reaches_no_staff_page(client, app) -> None:  # type: ignore[no-untyped-def]
    headers = f.subscriber(client)
    client.cookies.set("tongka_session", headers["Authorization"].removeprefix("Bearer "))
    for method, path, _roles in staff_routes(app):
        r = client.request(method, with_ids(path), headers=ACCEPT_HTML, follow_redirects=False)
        if method == "GET":
            assert r.status_code == 303 and r.headers["location"].startswith("/staff/login"), (
                path,
                r.status_code,
            )
        else:  # a form without the CSRF token goes nowhere; with one, to the staff log-in
            assert r.status_code in (303, 403), (method, path, r.status_code)
