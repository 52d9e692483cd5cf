"""Every route says who may call it, and a caller who may not is refused."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests import factories as f
from tests.helpers import production_settings
from tongka.app import create_app

# Routes anyone may call; every other /api/v1 route needs a subscriber's bearer token.
PUBLIC = {
    ("POST", "/api/v1/accounts"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/staff/token"),
    ("GET", "/api/v1/packs"),
    ("GET", "/api/v1/offers"),  # the offers running now, without their budgets
    ("GET", "/api/v1/overage-rates"),
    ("POST", "/api/v1/payments/callbacks/{provider}"),  # proven by the provider's signature instead
    ("POST", "/api/v1/auto-renew/alipay/agreements"),  # an agreement signed: Alipay's signature
    ("POST", "/api/v1/auto-renew/wechat/contracts"),  # a contract signed: WeChat Pay's signature
    ("GET", "/healthz"),
    ("GET", "/"),
    # Receipt pages: an unguessable link, the QR code's verification page, the public key.
    ("GET", "/receipts/{receipt_id}"),
    ("GET", "/receipts/verify"),
    ("GET", "/receipts/public-key"),
    # Is this official? Anyone may check a number or link (throttled per address).
    ("GET", "/api/v1/official/check"),
}
# The network's listener (charging/nchf_app.py): Nchf_ConvergedCharging and its health check, nothing else.
NCHF_ROUTES = {
    ("GET", "/healthz"),
    ("POST", "/nchf-convergedcharging/v3/chargingdata"),
    ("POST", "/nchf-convergedcharging/v3/chargingdata/{ChargingDataRef}/update"),
    ("POST", "/nchf-convergedcharging/v3/chargingdata/{ChargingDataRef}/release"),
}
DEV_ONLY = {("GET", "/dev/outbox")}
SANDBOX_ONLY_PREFIX = "/sandbox/"


WHO = (
    "Anyone",
    "The signed-in subscriber",
    "The line's owner",
    "The order's owner",
    "The payment provider",
    "Any staff member",
    "Store staff",
    "Store managers",
    "Operator admins",
    "The network (packet core)",
)


def operations(app) -> list[tuple[str, str, dict]]:  # type: ignore[no-untyped-def]
    return [
        (method.upper(), path, op)
        for path, item in app.openapi()["paths"].items()
        for method, op in item.items()
    ]


def test_every_route_states_who_may_call_it(app, nchf_app) -> None:
    ops = operations(app)
    assert len(ops) >= 15
    for method, path, op in ops + operations(nchf_app):
        assert op.get("description", "").startswith(WHO), (
            f"{method} {path} does not say who may call it"
        )


def test_the_network_has_its_own_listener_and_the_public_app_no_nchf(
    app, nchf_app, client, nchf
) -> None:
    assert {(method, path) for method, path, _op in operations(nchf_app)} == NCHF_ROUTES
    assert not any(path.startswith("/nchf-") for _method, path, _op in operations(app))
    for path in (
        "/nchf-convergedcharging/v3/chargingdata",
        "/nchf-convergedcharging/v3/chargingdata/x/update",
    ):
        r = client.post(path, json={})
        assert (r.status_code, r.json()["code"]) == (404, "not_found")
    # ...and the Nchf listener serves none of the public app: unknown there, in 3GPP's words.
    for method, path in (
        ("GET", "/"),
        ("GET", "/api/v1/packs"),
        ("POST", "/api/v1/auth/token"),
        ("GET", "/docs"),
    ):
        r = nchf.request(method, path)
        assert r.status_code == 404, (method, path)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json() == {
            "title": "Not Found",
            "status": 404,
            "detail": "No such resource on this CHF.",
            "cause": "RESOURCE_URI_STRUCTURE_NOT_FOUND",
        }
    r = nchf.get("/nchf-convergedcharging/v3/chargingdata")
    assert (r.status_code, r.json()["status"]) == (405, 405)


def test_every_private_route_refuses_a_caller_without_a_token(client, app) -> None:
    checked = 0
    for method, path, _op in operations(app):
        if (method, path) in PUBLIC | DEV_ONLY or path.startswith(SANDBOX_ONLY_PREFIX):
            continue
        url = path.replace("{line_id}", str(uuid.uuid4())).replace("{order_id}", str(uuid.uuid4()))
        for headers in ({}, {"Authorization": "Bearer not-a-real-token"}):
            r = client.request(method, url, json={}, headers=headers)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            body = r.json()
            assert (
                body["code"]
                in (
                    "not_authenticated",
                    "invalid_token",
                    "staff_session_invalid",
                )
                and body["status"] == 401
            )
            assert r.headers["www-authenticate"] == "Bearer"
        checked += 1
    assert checked >= 9


def test_packs_for_a_line_need_its_owner(client, sessions, demo) -> None:
    owner, line, _ = f.new_subscriber(client, sessions)
    assert client.get(f"/api/v1/packs?line_id={line['id']}").status_code == 401
    stranger = f.subscriber(client)
    r = client.get(f"/api/v1/packs?line_id={line['id']}", headers=stranger)
    assert (r.status_code, r.json()["code"]) == (404, "line_not_found")
    assert client.get(f"/api/v1/packs?line_id={line['id']}", headers=owner).status_code == 200


def test_unknown_paths_and_methods_are_problem_details(client) -> None:
    r = client.get("/api/v1/nothing-here")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = client.delete("/api/v1/packs")
    assert (r.status_code, r.json()["code"]) == (405, "method_not_allowed")


@pytest.fixture
def production_client(db_url: str):  # type: ignore[no-untyped-def]
    app = create_app(production_settings(db_url, sandbox_payment_secret=secrets.token_urlsafe(32)))
    with TestClient(app) as c:
        yield c
    app.state.engine.dispose()


def test_dev_outbox_and_sandbox_do_not_exist_in_production(production_client) -> None:
    assert production_client.get("/dev/outbox").status_code == 404
    assert production_client.post(f"/sandbox/payments/{uuid.uuid4()}/complete").status_code == 404
    assert production_client.get("/healthz").status_code == 200


def test_errors_speak_the_readers_language(client) -> None:
    r = client.get("/api/v1/me", headers={"Accept-Language": "zh-HK"})
    assert r.json()["detail"] == "請登入後繼續。" and r.headers["content-language"] == "zh-Hant"
    r = client.get("/api/v1/me", headers={"Accept-Language": "zh-CN"})
    assert r.json()["detail"] == "请登录后继续。"
    r = client.post(
        "/api/v1/accounts", json={"username": "x"}, headers={"Accept-Language": "zh-CN"}
    )
    assert r.status_code == 422 and r.json()["detail"].startswith("请检查以下字段")


def page_routes(app) -> list[tuple[str, str, Any]]:  # type: ignore[no-untyped-def]
    """The routes a browser opens (left out of the OpenAPI document): (method, path, endpoint).

    FastAPI 0.165 keeps an included router as one entry (`original_router` under its include's
    prefix), so they are walked down here."""
    from fastapi.routing import APIRoute

    def walk(routes: Any, prefix: str) -> Any:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                yield from walk(inner.routes, prefix + route.include_context.prefix)
            elif isinstance(route, APIRoute):
                yield prefix, route

    return [
        (method, prefix + route.path, route.endpoint)
        for prefix, route in walk(app.routes, "")
        if not route.include_in_schema
        for method in sorted(route.methods)
    ]


# Pages anyone may open; every other page is for a signed-in subscriber (a visitor is sent to log
# in) or, under these prefixes, for staff (sent to the staff log-in).
STAFF_PREFIXES = ("/staff", "/counter", "/console")
PUBLIC_PAGES = {
    ("GET", "/staff/login"),
    ("POST", "/staff/login"),
    ("GET", "/staff/enrol"),  # with the ticket of a password just proven, else to /staff/login
    ("POST", "/staff/enrol"),
    ("POST", "/staff/logout"),
    ("GET", "/"),
    ("GET", "/docs"),
    ("GET", "/docs/{name}"),
    ("GET", "/renew/{line_id}"),  # with a signed link from the network, or for the line's owner
    ("GET", "/receipts/{receipt_id}"),
    ("GET", "/receipts/verify"),
    ("GET", "/register"),
    ("POST", "/register"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/password/forgot"),
    ("POST", "/password/forgot"),
    ("GET", "/password/reset"),
    ("POST", "/password/reset"),
    ("GET", "/stores"),
    ("GET", "/official"),
    ("POST", "/official/report"),
}


def test_every_page_states_who_may_open_it(app) -> None:  # type: ignore[no-untyped-def]
    pages = page_routes(app)
    assert len(pages) >= 4
    for method, path, endpoint in pages:
        if path.startswith(SANDBOX_ONLY_PREFIX):  # dev only: the providers' own pages, played here
            continue
        assert (endpoint.__doc__ or "").startswith(WHO), (
            f"{method} {path} does not say who may open it"
        )


def test_every_private_page_sends_a_visitor_to_log_in(client, app) -> None:  # type: ignore[no-untyped-def]
    checked = 0
    for method, path, _endpoint in page_routes(app):
        if (method, path) in PUBLIC_PAGES or path.startswith((SANDBOX_ONLY_PREFIX, "/dev/")):
            continue
        url = (
            path.replace("{line_id}", str(uuid.uuid4()))
            .replace("{order_id}", str(uuid.uuid4()))
            .replace("{topup_id}", str(uuid.uuid4()))
        )
        r = client.request(method, url, headers={"Accept": "text/html"}, follow_redirects=False)
        login = "/staff/login?next=" if path.startswith(STAFF_PREFIXES) else "/login?next="
        if method == "GET":
            assert r.status_code == 303 and r.headers["location"].startswith(login), (
                method,
                path,
                r.status_code,
            )
        else:  # a form post without this browser's CSRF token goes nowhere, signed in or not
            assert r.status_code in (303, 403), (method, path, r.status_code)
        checked += 1
    assert checked >= 20  # the signed-in pages and their forms (#14)


def test_the_only_plain_route_is_the_balance_reads_twin_and_it_comes_first(app) -> None:  # type: ignore[no-untyped-def]
    """Every route the checks above walk is FastAPI's. One plain Starlette route serves an API path
    ahead of its FastAPI twin (the app's most frequent call, without FastAPI's work per request):
    it must be that one, for the same path, and matched before the twin, which keeps the docs."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount, Route

    from tongka.account import api as account_api

    plain = [
        r
        for r in app.routes
        if isinstance(r, Route) and not isinstance(r, APIRoute) and r.path.startswith("/api/")
    ]
    assert [(r.path, r.endpoint) for r in plain] == [
        ("/api/v1/lines/{line_id:uuid}/balance", account_api.balance_lean)
    ]
    twin = next(p for p in app.openapi()["paths"] if p.endswith("/balance"))
    assert twin == plain[0].path.replace(":uuid", "")
    routes = list(app.routes)
    reads = next(
        i for i, r in enumerate(routes) if getattr(r, "original_router", None) is account_api.reads
    )
    assert routes.index(plain[0]) < reads
    assert not [r for r in routes if isinstance(r, Mount) and r.path.startswith("/api/")]
