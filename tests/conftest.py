"""Shared fixtures: every test runs with its own imgroute home and no provider keys."""

from __future__ import annotations

import io
import sys

import pytest

from imgroute.cli.app import main
from tests.helpers import KEY_VARS, Result


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "imgroute-home"
    monkeypatch.setenv("IMGROUTE_HOME", str(home))
    for var in (*KEY_VARS, "IMGROUTE_LEDGER_URL", "IMGROUTE_MACHINE", "IMGROUTE_LEASE_SECONDS"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_backend(request, monkeypatch, isolated_home) -> str:
    """The test once on each ledger backend: the home's SQLite file, and a team ledger (a new
    PostgreSQL database, named by IMGROUTE_LEDGER_URL, which the processes a test starts inherit)."""
    if request.param == "postgres":
        from tests.pg_cluster import cluster

        monkeypatch.setenv("IMGROUTE_LEDGER_URL", cluster().new_database())
    return request.param


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the real CLI entry point in-process: exit code, stdout and stderr."""

    def run(*args: str, stdin: str | None = None) -> Result:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def fake_servers():
    from tests.fakes import FAKES

    servers = {name: cls().start() for name, cls in FAKES.items()}
    yield servers
    for server in servers.values():
        server.stop()


# Fakes whose provider is set up only in the tests that ask for it (the `azure` fixture): the others'
# routes were written before it, and Azure, at OpenAI's price, would take their fallbacks.
OPT_IN = ("azure", "openrouter")


def point_at(server, monkeypatch) -> None:
    """The environment a user of this provider has: its key, the base-URL override, its settings."""
    from imgroute.providers.registry import BASE_URL_ENV, KEY_ENV

    monkeypatch.setenv(KEY_ENV[server.name], server.key)
    monkeypatch.setenv(BASE_URL_ENV[server.name], server.url)
    for variable, value in getattr(server, "settings", {}).items():  # (Azure: the deployment's name)
        monkeypatch.setenv(variable, value)


@pytest.fixture
def fakes(fake_servers, monkeypatch, tmp_path):
    """The provider fakes on loopback, with keys and base URLs pointing at them (but OPT_IN's)."""
    for name, server in fake_servers.items():
        server.reset()
        if name not in OPT_IN:
            point_at(server, monkeypatch)
    monkeypatch.setenv("IMGROUTE_TIME_SCALE", "0")  # fakes advance per poll; no real waiting
    monkeypatch.chdir(tmp_path)
    return fake_servers


@pytest.fixture
def azure(fakes, fake_servers, monkeypatch):
    """The Azure fake, set up as its user would: key, endpoint (the base-URL override), deployment."""
    point_at(fake_servers["azure"], monkeypatch)
    return fake_servers["azure"]


@pytest.fixture
def openrouter(fakes, fake_servers, monkeypatch):
    """The OpenRouter fake, with its key and base-URL override."""
    point_at(fake_servers["openrouter"], monkeypatch)
    return fake_servers["openrouter"]
