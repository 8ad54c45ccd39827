"""`quote` must not pay for what it does not use: no HTTP or database stack on its path."""

import subprocess
import sys

PROBE = """
import sys
from imgroute.cli import main
try:
    main(["quote", "a lighthouse", "--quality", "high", "--json"])
except SystemExit:
    pass
heavy = sorted(m for m in ("httpx", "httpcore", "anyio", "h11", "sqlite3", "ssl", "imgroute.cli.gen",
                            "imgroute.cli.jobs", "imgroute.cli.batch") if m in sys.modules)
print("HEAVY", heavy, file=sys.stderr)
"""


def test_quote_does_not_import_httpx_or_sqlite(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env={"IMGROUTE_HOME": str(tmp_path)}
    )
    assert "HEAVY []" in result.stderr, result.stderr


def test_help_lists_every_command(cli):
    r = cli("--help")
    for command in ("quote", "providers", "pricing", "gen", "edit", "keys", "jobs", "budget", "spend", "batch"):
        assert command in r.out


def test_version(cli):
    from imgroute import __version__

    r = cli("--version")
    assert r.code == 0 and r.out == f"imgroute {__version__}\n"
