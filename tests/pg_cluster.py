"""A PostgreSQL of the tests' own: `initdb` and `pg_ctl` from the Debian `postgresql` package, on a
Unix socket in a temporary directory (no TCP port, nothing shared with a server the machine may run),
as the `postgres` user when the tests run as root (PostgreSQL refuses to run as root).

One cluster per test process, started on first use and stopped at exit; each test gets a database
of its own. Where PostgreSQL is not installed, the tests that need it are skipped with the reason,
unless IMGROUTE_TEST_POSTGRES=required (as `.ci/run` sets), where they fail instead: CI must not
pass with the team ledger untested.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REQUIRED_ENV = "IMGROUTE_TEST_POSTGRES"
PORT = 5432  # (a socket file in our own directory: no clash with any other cluster's)


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Cluster:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="imgroute-pg-"))
        self.data, self.socket = self.root / "data", self.root
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._names = itertools.count(1)
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
                   "-E", "UTF8", "--locale", "C"])  # fmt: skip
        options = f"-c listen_addresses='' -c unix_socket_directories={self.socket} -p {PORT} -c fsync=off " \
                  "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"  # fmt: skip
        self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l", str(self.root / "log"),
                   "start"])  # fmt: skip
        atexit.register(self.stop)

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(_as_postgres(command), capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stderr or done.stdout}")

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://postgres{secret}@/{database}?host={self.socket}&port={PORT}"

    def new_database(self) -> str:
        """A fresh, empty database: its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(_as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                         "stop"]), capture_output=True)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


_cluster: Cluster | None = None


def cluster() -> Cluster:
    """This process's cluster, started on first use; skips (or, where required, fails) without one."""
    global _cluster
    if _cluster is None:
        bindir = binaries()
        missing = None
        if bindir is None:
            missing = "PostgreSQL is not installed (apt-get install postgresql)"
        else:
            try:
                import psycopg  # noqa: F401
            except ImportError:
                missing = "psycopg is not installed (pip install -e '.[postgres]')"
        if missing:
            if os.environ.get(REQUIRED_ENV) == "required":
                pytest.fail(f"{missing}, and {REQUIRED_ENV}=required", pytrace=False)
            pytest.skip(f"{missing}: the team ledger's tests did not run")
        _cluster = Cluster(bindir)
    return _cluster
