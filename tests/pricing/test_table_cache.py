"""The built pricing table kept in the home: used while the files are the same, never stale,
never hiding an error, owner-only."""

from __future__ import annotations

import stat
import subprocess
import sys

from imgroute import session
from imgroute.pricing import cache as table_cache

PROBE = """
import sys
from imgroute.cli.app import main
try:
    main(["quote", "a lighthouse", "--quality", "high", "--json"])
except SystemExit:
    pass
print("YAML", "yaml" in sys.modules, file=sys.stderr)
"""


def test_a_warm_quote_reads_the_cached_table_without_yaml(tmp_path):
    run = [sys.executable, "-c", PROBE]
    (tmp_path / "home").mkdir(mode=0o700)
    env = {"IMGROUTE_HOME": str(tmp_path / "home")}
    first = subprocess.run(run, capture_output=True, text=True, env=env)
    second = subprocess.run(run, capture_output=True, text=True, env=env)
    assert "YAML True" in first.stderr and "YAML False" in second.stderr, second.stderr
    assert first.stdout == second.stdout  # the same answer either way


def test_the_cache_and_its_directory_are_the_owners_only(isolated_home):
    isolated_home.mkdir(mode=0o700)
    session.load_pricing(None)
    cached = isolated_home / table_cache.CACHE_FILE
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE(cached.parent.stat().st_mode) == 0o700


def test_a_quote_on_a_fresh_machine_makes_no_home(isolated_home, cli):
    assert cli("quote", "x").code == 0
    assert not isolated_home.exists()


def test_an_edit_to_the_users_pricing_file_is_seen_at_once(isolated_home, cli):
    isolated_home.mkdir()
    user = isolated_home / "pricing.yaml"
    kie = "version: 1\noffers:\n  - provider: kie\n    model: gpt-image-2-text-to-image\n"
    user.write_text(kie + "    price: {credits_per_image: {1K: 6}}\n")
    before = cli("quote", "x", "--quality", "high", "--json")
    user.write_text(kie + "    price: {credits_per_image: {1K: 9}}\n")  # the same size, at once
    after = cli("quote", "x", "--quality", "high", "--json")
    assert before.code == after.code == 0, after.err

    def cost(r):
        return next(q["cost_usd"] for q in r.json()["quotes"] if q["offer"] == "kie/gpt-image-2-text-to-image")

    assert cost(after) == cost(before) * 1.5


def test_a_damaged_cache_is_rebuilt(isolated_home, cli):
    isolated_home.mkdir()
    first = cli("quote", "x", "--json")
    (isolated_home / table_cache.CACHE_FILE).write_bytes(b"not a pickle")
    again = cli("quote", "x", "--json")
    assert again.code == 0 and again.out == first.out
    assert (isolated_home / table_cache.CACHE_FILE).read_bytes() != b"not a pickle"


def test_a_bad_pricing_file_is_reported_every_time(isolated_home, cli):
    isolated_home.mkdir()
    (isolated_home / "pricing.yaml").write_text("offers: [\n")
    for _ in range(2):
        r = cli("quote", "x")
        assert r.code != 0 and "not valid YAML" in r.err
