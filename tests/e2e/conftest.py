"""End-to-end fixtures: the real service in its own process, and a real headless Chromium.

`live_server` does what a user does after `make run`'s setup: `tongka db upgrade`,
`tongka demo load` (once per test process, each module's server starting from a copy of
that file), `tongka serve`, with its own SQLite file and random secrets in a temporary
directory (also its working directory, so no `var/tongka.env` is read). One server per
test module. `tongka` runs the command line against that same database.

Chromium is Debian's `/usr/bin/chromium`, driven by Playwright; without it (or without
Playwright) browser tests skip, unless `TONGKA_TEST_REQUIRE_ALL=1` (as in CI) makes
that a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import STOP_TIMEOUT, TONGKA, free_port, log_tail, wait_until_up
from tongka.charging.nf_auth import write_dev_key

REQUIRE_ALL = os.environ.get("TONGKA_TEST_REQUIRE_ALL") == "1"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COMMAND_TIMEOUT = 60  # seconds, for any one `tongka` command

Tongka = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def e2e_secrets() -> dict[str, str]:
    """The secrets of every server this test process starts (the demo database is sealed with them)."""
    return {
        "TONGKA_SECRET_KEY": secrets.token_urlsafe(32),
        "TONGKA_SANDBOX_PAYMENT_SECRET": secrets.token_urlsafe(32),
    }


def run_tongka(
    home: Path, env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`tongka <args>` as a user runs it, in `home` with `env`; a failure, unless `check` is off."""
    result = subprocess.run(
        [str(TONGKA), *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    if check:
        assert result.returncode == 0, (
            f"tongka {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


# Where one server's environment differs from another's without changing what the demo writes.
PER_SERVER = {
    "TONGKA_DATABASE_URL",
    "TONGKA_PUBLIC_BASE_URL",
    "TONGKA_NCHF_BIND",
    "TONGKA_NRF_DEV_KEY_FILE",
    "TONGKA_SANDBOX_STORE_URL",
}
DemoDatabase = Callable[[dict[str, str]], Path]


@pytest.fixture(scope="session")
def make_run_keys() -> dict[str, str]:
    """As `make run` writes var/tongka.env (`tongka keys generate`): the secrets, every sandbox
    provider's keys and a receipt signing key; one set per test process, so that the modules
    that use them share one demo database."""
    from tongka.sandbox.keys import generate

    return generate()


@pytest.fixture(scope="session")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> DemoDatabase:
    """`tongka db upgrade` then `tongka demo load`, as `make run` does, once per test process and
    set of keys: each module's server starts from a copy of the file (the two commands took
    5–10 s a module)."""
    made: dict[tuple[tuple[str, str], ...], Path] = {}

    def make(server_env: dict[str, str]) -> Path:
        keys = tuple(
            sorted(
                (k, v)
                for k, v in server_env.items()
                if k.startswith("TONGKA_") and k not in PER_SERVER
            )
        )
        if keys not in made:
            home = tmp_path_factory.mktemp("tongka-demo")
            env = {**server_env, "TONGKA_DATABASE_URL": f"sqlite:///{home / 'tongka.db'}"}
            run_tongka(home, env, "db", "upgrade")
            run_tongka(home, env, "demo", "load")
            made[keys] = home / "tongka.db"
        return made[keys]

    return make


def _require_tongka() -> None:
    if not TONGKA.exists():
        pytest.fail(
            f"the `tongka` script is not next to {sys.executable}: install the project (make test does)"
        )


@pytest.fixture(scope="module")
def e2e_env(
    tmp_path_factory: pytest.TempPathFactory, e2e_secrets: dict[str, str]
) -> dict[str, Any]:
    """A fresh home for one server: directory, SQLite file, secrets, port and environment."""
    _require_tongka()
    home = tmp_path_factory.mktemp("tongka-e2e")
    port, nchf_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGKA_")}
    env.update(
        e2e_secrets,
        TONGKA_ENV="dev",  # as make run writes it (production is the default)
        TONGKA_DATABASE_URL=f"sqlite:///{home / 'tongka.db'}",
        TONGKA_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        TONGKA_NCHF_BIND=f"127.0.0.1:{nchf_port}",  # the network's listener, beside the public one
        TONGKA_NRF_DEV_KEY_FILE=str(
            home / "nrf-dev-key.pem"
        ),  # the dev NRF's key, as make run makes it
        PYTHONUNBUFFERED="1",
    )
    write_dev_key(home / "nrf-dev-key.pem")
    return {
        "home": home,
        "port": port,
        "env": env,
        "db": home / "tongka.db",
        "nchf_url": f"http://127.0.0.1:{nchf_port}",
    }


@pytest.fixture(scope="module")
def tongka(e2e_env: dict[str, Any]) -> Tongka:
    """Run `tongka <args>` as a user would, against the live server's database: tongka("ledger", "verify")."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_tongka(e2e_env["home"], e2e_env["env"], *args, check=check)

    return run


@pytest.fixture(scope="module")
def live_server(
    e2e_env: dict[str, Any], tongka: Tongka, demo_database: DemoDatabase
) -> Iterator[str]:
    """The base URL of a freshly migrated, demo-loaded `tongka serve` in its own process."""
    shutil.copy(demo_database(e2e_env["env"]), e2e_env["db"])
    base_url = e2e_env["env"]["TONGKA_PUBLIC_BASE_URL"]
    log_path = e2e_env["home"] / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(TONGKA), "serve", "--port", str(e2e_env["port"])],
            cwd=e2e_env["home"],
            env=e2e_env["env"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(process, base_url, log_path)
        wait_until_up(process, e2e_env["nchf_url"], log_path)
        yield base_url
        # After every scenario: the ledger must still match its entries.
        tongka("ledger", "verify")
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
    log_text = log_path.read_text(errors="replace")
    assert "Traceback" not in log_text and "unhandled_error" not in log_text, (
        "the server logged an error:\n" + log_tail(log_path, 80)
    )


def _require(what: str, why: str) -> None:
    if REQUIRE_ALL:
        pytest.fail(f"{what} is required here (TONGKA_TEST_REQUIRE_ALL=1), but {why}")
    pytest.skip(
        f"{what}: {why}; browser tests skipped (TONGKA_TEST_REQUIRE_ALL=1, as in CI, makes this a failure)"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven by Playwright (no downloaded browsers)."""
    if not CHROMIUM.exists():
        _require(f"Chromium at {CHROMIUM}", "it is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require("the Python package `playwright`", "it is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, live_server: str) -> Iterator[Any]:
    """A fresh browser tab (own cookies) whose relative URLs go to the live server."""
    context = browser.new_context(
        base_url=live_server, viewport={"width": 1000, "height": 700}, locale="en-GB"
    )
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()
