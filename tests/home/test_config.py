"""The home and its config.yaml: a config that cannot be read is a one-line error; the home and
the ledger are private whoever makes them, and every command warns when the home is not."""

from __future__ import annotations

import pytest

from tests.helpers import only


def test_a_config_yaml_that_is_a_directory_or_not_utf8_is_an_error(cli, isolated_home):
    (isolated_home / "config.yaml").mkdir(parents=True)
    r = cli("quote", "x")
    assert r.code == 3 and "config.yaml" in r.err and "directory" in r.err
    (isolated_home / "config.yaml").rmdir()
    (isolated_home / "config.yaml").write_bytes(b"plans: \xff\n")
    r = cli("quote", "x")
    assert r.code == 3 and "UTF-8" in r.err and "permission" not in r.err


def test_the_home_and_the_ledger_are_private_whoever_makes_them(cli, fakes, isolated_home):
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert cli("gen", "x", "--out", "o", *only(fakes, "kie")).code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(isolated_home.stat().st_mode) == 0o700
    for name in ("ledger.sqlite", "ledger.sqlite-wal"):
        path = isolated_home / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_every_command_warns_when_the_home_is_open_to_others(cli, isolated_home):
    assert cli("keys", "list").err == ""
    isolated_home.mkdir(mode=0o755)
    isolated_home.chmod(0o755)
    r = cli("quote", "x")
    assert r.code == 0 and f"warning: {isolated_home} can be read by others (mode 755)" in r.err
    assert f"chmod 700 {isolated_home}" in r.err


def test_config_yaml_sets_what_imgroute_mcp_uses_and_refuses_what_it_does_not_know(tmp_path):
    from decimal import Decimal

    from imgroute.errors import ConfigError
    from imgroute.home.config import load_settings

    (tmp_path / "config.yaml").write_text("mcp: {out: ~/agent-images, max_cost: 0.05, session_budget: '2'}\n")
    settings = load_settings(tmp_path)
    assert settings.mcp["max_cost"] == Decimal("0.05") and settings.mcp["session_budget"] == Decimal("2")
    assert str(settings.mcp["out"]).endswith("agent-images") and "~" not in str(settings.mcp["out"])
    (tmp_path / "config.yaml").write_text("mcp: {max_spend: 5}\n")
    with pytest.raises(ConfigError, match="unknown field"):
        load_settings(tmp_path)
