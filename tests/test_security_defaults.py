"""Fail closed: production is the default, unsafe production settings are refused at start-up,
every answer carries the security headers, and the API docs load nothing from another host."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import TONGKA
from tests.helpers import production_settings as production
from tongka import config
from tongka.app import create_app
from tongka.config import Settings

TEMPLATES = Path(config.__file__).parent / "templates"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@pytest.fixture
def production_app(db_url: str) -> Iterator[Any]:
    app = create_app(production(db_url, charging_worker="thread", charging_notify_every_seconds=0))
    yield app
    app.state.engine.dispose()


def test_production_is_the_default_and_needs_no_sandbox_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TONGKA_ENV", raising=False)
    settings = Settings(
        secret_key=secrets.token_urlsafe(32),
        public_base_url="https://tongka.example",
        _env_file=None,  # type: ignore[call-arg]
        nrf_jwks="https://nrf.example/oauth2/jwks",
        nrf_issuer=str(uuid.uuid4()),
    )
    assert settings.env == "production" and not settings.dev
    assert not settings.sandbox_enabled and not settings.docs_enabled
    assert settings.sandbox_payment_secret is None
    config.check(settings)  # safe as it is


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (
            {"payment_sandbox": True, "sandbox_payment_secret": secrets.token_urlsafe(32)},
            "TONGKA_PAYMENT_SANDBOX=true",
        ),
        ({"secret_key": "short-but-random-Zq8"}, "TONGKA_SECRET_KEY is 20 bytes"),
        ({"secret_key": "changeme"}, "TONGKA_SECRET_KEY is a demo or placeholder value"),
        ({"secret_key": "x" * 64}, "TONGKA_SECRET_KEY is a demo or placeholder value"),
        ({"secret_key": "demo-password"}, "TONGKA_SECRET_KEY is a demo or placeholder value"),
        ({"public_base_url": "http://tongka.example"}, "production needs the https:// address"),
    ],
)
def test_production_refuses_to_start_with_an_unsafe_setting(
    values: dict[str, Any], says: str
) -> None:
    with pytest.raises(config.UnsafeSettings) as refused:
        create_app(production(**values))
    assert says in str(refused.value)


def test_one_message_lists_every_problem() -> None:
    settings = production(secret_key="dev", payment_sandbox=True)
    with pytest.raises(config.UnsafeSettings) as refused:
        create_app(settings)
    assert len(refused.value.problems) == 3  # the sandbox, its missing secret, the demo key
    for problem in refused.value.problems:
        assert f"  - {problem}" in str(refused.value)


def test_the_sandbox_secret_is_required_only_while_the_sandbox_is_on() -> None:
    dev = Settings(env="dev", secret_key="s", _env_file=None)  # type: ignore[call-arg]
    assert config.problems(dev) == [
        "TONGKA_SANDBOX_PAYMENT_SECRET is required while the payment sandbox is on."
    ]
    assert config.problems(dev.model_copy(update={"payment_sandbox": False})) == []
    assert config.problems(production()) == []


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`tongka <args>` in an empty directory (no var/tongka.env), with only these TONGKA_* variables."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TONGKA_")}
    environment.update(env, TONGKA_DATABASE_URL=f"sqlite:///{tmp_path / 'tongka.db'}")
    return subprocess.run(
        [str(TONGKA), *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.e2e
def test_serve_refuses_unsafe_production_settings_with_one_clear_message(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        "serve",
        "--port",
        "1",
        TONGKA_SECRET_KEY="changeme",
        TONGKA_PAYMENT_SANDBOX="true",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("tongka refuses to start with these settings:")
    for says in (
        "TONGKA_PAYMENT_SANDBOX=true",
        "TONGKA_SANDBOX_PAYMENT_SECRET",
        "TONGKA_SECRET_KEY",
    ):
        assert says in result.stderr
    # A missing secret key is one clear message too, not a traceback.
    result = _run(tmp_path, "serve", "--port", "1")
    assert (
        result.returncode == 2
        and "Traceback" not in result.stderr
        and "secret_key" in result.stderr
    )


def test_demo_load_refuses_in_production(cli, monkeypatch: pytest.MonkeyPatch, sessions) -> None:  # type: ignore[no-untyped-def]
    from tongka import config as config_module
    from tongka.account.models import Account

    monkeypatch.setenv("TONGKA_ENV", "production")
    config_module.get_settings.cache_clear()
    result = cli("demo", "load")
    assert result.exit_code == 2
    assert "refuses to run in production" in result.output
    with sessions() as session:
        assert session.query(Account).count() == 0


def test_every_html_page_has_the_security_headers(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/")
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "strict-transport-security" not in page.headers  # dev: plain http on 127.0.0.1
    for path in ("/healthz", "/api/v1/nothing-here", "/static/tongka.css"):
        r = client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert "content-security-policy" not in r.headers, path  # not HTML
    # The sandbox provider pages send the payer back to the merchant's return URL, wherever it is.
    sandbox_page = client.get("/sandbox/alipay/cashier/nothing")
    assert sandbox_page.headers["content-security-policy"].endswith(
        "form-action 'self' http: https:"
    )


def test_outside_dev_every_answer_has_hsts(production_app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(production_app) as client:
        for path in ("/", "/healthz"):
            assert client.get(path).headers["strict-transport-security"] == "max-age=31536000"
        assert client.get("/").headers["content-security-policy"] == CSP


class _Inline(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' blocks: inline scripts, style attributes and
    elements, event handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        # A JSON data block (`type="application/json"`, a chart's figures) is never run: no CSP
        # blocks it, and a page reads it with JSON.parse.
        data_block = names.get("type") == "application/json"
        if (tag == "script" and "src" not in names and not data_block) or tag == "style":
            self.found.append(f"<{tag}>")
        self.found += [
            f"{tag} {name}=" for name in names if name == "style" or name.startswith("on")
        ]


@pytest.mark.parametrize(
    "template", sorted(p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.html"))
)
def test_no_template_has_inline_script_or_style(template: str) -> None:
    parser = _Inline()
    parser.feed((TEMPLATES / template).read_text())
    found = parser.found
    if template.startswith("messages/"):
        # An email's HTML is no page of ours (no CSP applies) and mail clients drop <style> and
        # stylesheets: style attributes are how email is styled. Never a script or a handler.
        found = [f for f in found if not f.endswith(" style=")]
    assert found == []


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_the_api_docs_load_nothing_from_another_host(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/docs")
    assert page.status_code == 200
    parser = _References()
    parser.feed(page.text)
    assert parser.urls and all(re.match(r"^/[^/]|^data:", url) for url in parser.urls), parser.urls
    assert page.headers["content-security-policy"] == CSP
    for url in parser.urls:
        if url.startswith("/"):
            assert client.get(url).status_code == 200, url
    assert client.get("/openapi.json").json()["info"]["title"] == "tongka"
    assert (
        client.get("/redoc").status_code == 404
    )  # not served: it would load its script from a CDN
    assert client.get("/docs/index.html").status_code == 404  # only the two files the page uses


def test_in_production_the_api_docs_are_off_unless_asked_for(production_app, db_url: str) -> None:  # type: ignore[no-untyped-def]
    with TestClient(production_app) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 404, path
        assert 'href="/docs"' not in client.get("/").text
    asked = create_app(
        production(db_url, api_docs=True, charging_worker="thread", charging_notify_every_seconds=0)
    )
    with TestClient(asked) as client:
        assert (
            client.get("/docs").status_code == 200
            and client.get("/openapi.json").status_code == 200
        )
    asked.state.engine.dispose()


# --- the network's listener (TONGKA_NCHF_*) -------------------------------------------------


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, str]:
    """Files that exist (their content is the listener's concern, checked when it starts)."""
    files = {}
    for name in ("cert", "key", "ca"):
        (tmp_path / f"{name}.pem").write_text("-----BEGIN-----\n")
        files[name] = str(tmp_path / f"{name}.pem")
    return files


@pytest.mark.parametrize("env", ["dev", "production"])
@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"nchf_tls_cert": "cert"}, "TONGKA_NCHF_TLS_CERT and TONGKA_NCHF_TLS_KEY go together"),
        ({"nchf_tls_key": "key"}, "TONGKA_NCHF_TLS_CERT and TONGKA_NCHF_TLS_KEY go together"),
        ({"nchf_client_ca": "ca"}, "client certificates can only be checked over TLS"),
    ],
)
def test_nchf_tls_set_by_halves_is_refused(
    env: str, values: dict[str, str], says: str, pem_files
) -> None:  # type: ignore[no-untyped-def]
    settings = production(env=env, **{k: pem_files[v] for k, v in values.items()})
    assert any(says in p for p in config.problems(settings)), config.problems(settings)


def test_nchf_files_that_are_not_there_are_refused(tmp_path: Path) -> None:
    settings = production(
        nchf_tls_cert=str(tmp_path / "no.crt"), nchf_tls_key=str(tmp_path / "no.key")
    )
    assert sum("which is not a file" in p for p in config.problems(settings)) == 2


@pytest.mark.parametrize(
    "bind", ["0.0.0.0:8001", "10.20.0.5:8001", "[::]:8001", "chf.example:8001"]
)
def test_production_refuses_an_nchf_listener_others_reach_without_mutual_tls(
    bind: str, pem_files
) -> None:  # type: ignore[no-untyped-def]
    says = "without mutual TLS"
    assert any(says in p for p in config.problems(production(nchf_bind=bind)))
    tls = production(nchf_bind=bind, nchf_tls_cert=pem_files["cert"], nchf_tls_key=pem_files["key"])
    assert any(says in p for p in config.problems(tls))  # TLS, but anyone's client
    mutual = production(
        nchf_bind=bind,
        nchf_tls_cert=pem_files["cert"],
        nchf_tls_key=pem_files["key"],
        nchf_client_ca=pem_files["ca"],
    )
    assert config.problems(mutual) == []
    assert (
        config.problems(production(env="dev", payment_sandbox=False, nchf_bind=bind)) == []
    )  # dev: h2c anywhere


@pytest.mark.parametrize(
    "bind", ["127.0.0.1:8001", "127.0.0.2:9000", "[::1]:8001", "localhost:8001"]
)
def test_production_allows_plaintext_h2c_on_loopback(bind: str) -> None:
    assert config.problems(production(nchf_bind=bind)) == []  # behind a service mesh's sidecar


@pytest.mark.parametrize(
    "bind", ["8001", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", ":8001"]
)
def test_a_malformed_nchf_bind_stops_the_start(bind: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        production(nchf_bind=bind)
