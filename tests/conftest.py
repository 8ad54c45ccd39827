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


@pytest.fixture
def fakes(fake_servers, monkeypatch, tmp_path):
    """All five provider fakes on loopback, with keys and base URLs pointing at them."""
    from imgroute.providers.registry import BASE_URL_ENV, KEY_ENV

    for name, server in fake_servers.items():
        server.reset()
        monkeypatch.setenv(KEY_ENV[name], server.key)
        monkeypatch.setenv(BASE_URL_ENV[name], server.url)
    monkeypatch.setenv("IMGROUTE_TIME_SCALE", "0")  # fakes advance per poll; no real waiting
    monkeypatch.chdir(tmp_path)
    return fake_servers
