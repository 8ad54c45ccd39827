"""`quote` must not pay for what it does not use: no HTTP or database stack on its path."""

import subprocess
import sys

PROBE = """
import sys
from imgroute.cli.app import main
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
    assert r.code == 0 and r.out.splitlines()[0] == f"imgroute {__version__}"


EXIT_PROBE = """
import atexit, gc, sys
atexit.register(lambda: print("FROZEN", gc.get_freeze_count() > 0, file=sys.stderr))
sys.argv = ["imgroute", *sys.argv[1:]]
from imgroute.cli.app import entry
entry()
"""


def test_the_program_exits_without_collecting_its_heap_and_keeps_its_exit_code(tmp_path):
    env = {"IMGROUTE_HOME": str(tmp_path)}
    ok = subprocess.run([sys.executable, "-c", EXIT_PROBE, "quote", "a cat"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "FROZEN True" in ok.stderr, ok.stderr
    assert "offer" in ok.stdout
    bad = subprocess.run([sys.executable, "-c", EXIT_PROBE, "quote", "a cat", "--qualty", "high"], capture_output=True,
                         text=True, env=env)  # fmt: skip
    assert bad.returncode == 2 and "FROZEN True" in bad.stderr and "--quality" in bad.stderr
