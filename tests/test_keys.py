import json
import stat

import pytest


def test_set_list_remove_path(cli, isolated_home):
    secret = "fal-secret-abcdefghijklmnop"
    r = cli("keys", "set", "fal", "--value", secret)
    assert r.code == 0 and secret not in r.out
    path = isolated_home / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"fal": secret}

    r = cli("keys", "list")
    assert r.code == 0 and secret not in r.out
    assert "fal       FAL_KEY           from " in r.out and "kie       KIE_API_KEY       not set" in r.out
    rows = {row["provider"]: row for row in cli("keys", "list", "--json").json()}
    assert rows["fal"]["source"] == "file" and rows["openai"]["source"] == "missing"
    assert "value" not in rows["fal"]

    assert cli("keys", "path").out.strip() == str(path)
    assert cli("keys", "remove", "FAL_KEY").code == 0
    assert json.loads(path.read_text()) == {}


def test_environment_wins_and_is_reported(cli, monkeypatch):
    cli("keys", "set", "kie", "--value", "from-file-0000")
    monkeypatch.setenv("KIE_API_KEY", "from-env-1111")
    rows = {row["provider"]: row for row in cli("keys", "list", "--json").json()}
    assert rows["kie"]["source"] == "env"

    from imgroute.home.keys import all_keys
    from imgroute.providers.registry import BUILT_IN

    assert all_keys(BUILT_IN)["kie"] == "from-env-1111"  # what every door sends with


def test_key_from_stdin(cli, isolated_home):
    r = cli("keys", "set", "openai", stdin="sk-from-stdin-123\n")
    assert r.code == 0
    assert json.loads((isolated_home / "keys.json").read_text()) == {"openai": "sk-from-stdin-123"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["keys", "set", "midjourney", "--value", "x"], "unknown key name 'midjourney'"),
        (["keys", "set", "fal", "--value", "  "], "the key is empty"),
        (["keys", "set", "fal", "--value", "two words"], "contains spaces"),
    ],
)
def test_bad_key_input(cli, args, needle):
    r = cli(*args)
    assert r.code == 2 and needle in r.err and len(r.err.splitlines()) == 1


def test_corrupt_keys_file_is_a_config_error(cli, isolated_home):
    isolated_home.mkdir()
    (isolated_home / "keys.json").write_text("{not json")
    r = cli("keys", "list")
    assert r.code == 3 and "cannot read keys file" in r.err


def test_bad_base_url_is_a_config_error(cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("IMGROUTE_OPENAI_BASE_URL", "api.example.com")
    r = cli("gen", "x", "--dry-run")
    assert r.code == 3 and "IMGROUTE_OPENAI_BASE_URL='api.example.com' is not an http(s) URL" in r.err
