import json
import stat

import pytest

from tests.helpers import only


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


# -- messages about keys, and a keys file others can read ------------------------------------------


def test_a_refused_key_says_so_and_how_to_set_it(cli, fakes):
    fakes["kie"].key = "another-key-entirely-0000"
    r = cli("gen", "x", "--out", "o", *only(fakes, "kie"))
    assert r.code == 5 and "kie: kie:" not in r.err
    assert "kie refused its key: check KIE_API_KEY, or run: imgroute keys set kie" in r.err


def test_keys_set_warns_when_the_variable_wins(cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-shell")
    r = cli("keys", "set", "openai", "--value", "sk-stored")
    assert r.code == 0 and "$OPENAI_API_KEY is set here and wins" in r.err


def test_a_keys_file_others_can_read_is_refused(cli, isolated_home):
    assert cli("keys", "set", "kie", "--value", "kie-secret-123").code == 0
    (isolated_home / "keys.json").chmod(0o644)
    r = cli("keys", "list")
    assert r.code == 3 and "chmod 600" in r.err and "kie-secret-123" not in r.err
