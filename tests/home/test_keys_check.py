"""`imgroute keys check`: each key present shown to a route its provider documents as free (the
fakes serve them), valid / refused / unknown, balances beside the prepaid credits imgroute tracks,
and nothing generated or paid. Exit 0 all valid, 3 a key refused, 5 a provider not reached."""

from __future__ import annotations

import socket

import pytest

from imgroute.providers.registry import BASE_URL_ENV, KEY_ENV

ROUTES = {
    "openai": "GET /v1/models",
    "fal": "GET /v1/account/billing",
    "piapi": "GET /account/info",
    "kie": "GET /api/v1/chat/credit",
    "apiframe": "GET /v2/me",
    "replicate": "GET /v1/account",
}


def by_provider(result) -> dict:
    return {row["provider"]: row for row in result.json()}


def nothing_paid(fakes) -> bool:
    """Only GETs reached the fakes: nothing was generated, nothing was paid."""
    return all(fake.charges == 0 and {r.method for r in fake.requests} <= {"GET"} for fake in fakes.values())


def test_every_key_valid_says_so_with_the_free_route_and_the_balances(cli, fakes):
    r = cli("keys", "check", "--json")
    assert r.code == 0, r.err
    rows = by_provider(r)
    assert {p: (row["state"], row["route"], row["reached"]) for p, row in rows.items()} == {
        p: ("valid", route, True) for p, route in ROUTES.items()
    }
    assert {p: (row["balance"], row["unit"]) for p, row in rows.items()} == {
        "openai": (None, None),
        "fal": (12.5, "USD"),
        "piapi": (25, "USD"),
        "kie": (5000, "credits"),
        "apiframe": (52000, "credits"),
        "replicate": (None, None),
    }
    assert nothing_paid(fakes)


def test_the_text_report(cli, fakes):
    r = cli("keys", "check")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        "openai    valid    GET /v1/models",
        "fal       valid    GET /v1/account/billing; balance 12.50 USD",
        "piapi     valid    GET /account/info; balance 25.00 USD",
        "kie       valid    GET /api/v1/chat/credit; balance 5,000 credits",
        "apiframe  valid    GET /v2/me; balance 52,000 credits",
        "replicate valid    GET /v1/account",
    ]


@pytest.mark.parametrize("provider", list(ROUTES))
def test_a_refused_key_is_named_never_printed_and_exits_3(cli, fakes, monkeypatch, provider):
    wrong = f"wrong-{provider}-key-0123456789abcdefXYZ"
    monkeypatch.setenv(KEY_ENV[provider], wrong)
    r = cli("keys", "check")
    assert r.code == 3, r.out + r.err
    line = next(line for line in r.out.splitlines() if line.startswith(provider))
    assert f"refused  {ROUTES[provider]}: ${KEY_ENV[provider]} was refused" in line
    assert wrong not in r.out + r.err and wrong[:16] not in r.out + r.err
    assert nothing_paid(fakes)


def test_a_refused_key_from_the_keys_file_is_named_by_the_file(cli, fakes, monkeypatch, isolated_home):
    monkeypatch.delenv(KEY_ENV["kie"])
    cli("keys", "set", "kie", "--value", "kie-stored-but-wrong-000000")
    r = cli("keys", "check", "kie", "--json")
    assert r.code == 3
    assert by_provider(r)["kie"]["source"] == "file" and "kie-stored-but-wrong" not in r.out


@pytest.mark.parametrize("auth_http_status", [200, 401])
def test_kie_refuses_with_code_401_whatever_the_http_status(cli, fakes, monkeypatch, auth_http_status):
    fakes["kie"].auth_http_status = auth_http_status
    monkeypatch.setenv(KEY_ENV["kie"], "kie-wrong-key-000000000000")
    r = cli("keys", "check", "kie", "--json")
    assert r.code == 3 and by_provider(r)["kie"]["state"] == "refused"
    assert by_provider(r)["kie"]["detail"] == "code 401: You do not have access permissions"


@pytest.mark.parametrize(
    ("provider", "setup", "state"),
    [
        ("apiframe", lambda f: setattr(f, "inactive", True), "refused"),  # 403 API key is inactive
        ("fal", lambda f: setattr(f, "credits", 0), "valid"),  # a zero balance is still a valid key
        ("fal", lambda f: setattr(f, "billing_access", False), "unknown"),  # may not read billing
    ],
)
def test_what_each_answer_means(cli, fakes, provider, setup, state):
    setup(fakes[provider])
    r = cli("keys", "check", provider, "--json")
    assert by_provider(r)[provider]["state"] == state
    assert r.code == {"valid": 0, "refused": 3, "unknown": 0}[state]


def test_a_provider_that_cannot_be_reached_exits_5(cli, fakes, monkeypatch):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(BASE_URL_ENV["openai"], f"http://127.0.0.1:{port}")
    fakes["apiframe"].inject("poll", status=503, times=99)
    r = cli("keys", "check", "--json")
    assert r.code == 5, r.err
    rows = by_provider(r)
    assert (rows["openai"]["state"], rows["openai"]["reached"]) == ("unknown", False)
    assert (rows["apiframe"]["state"], rows["apiframe"]["reached"]) == ("unknown", False)
    assert rows["kie"]["state"] == "valid"


def test_a_refused_key_wins_over_an_unreachable_provider(cli, fakes, monkeypatch):
    fakes["apiframe"].inject("poll", status=503, times=99)
    monkeypatch.setenv(KEY_ENV["kie"], "kie-wrong-key-000000000000")
    assert cli("keys", "check").code == 3


@pytest.mark.parametrize(("name", "checked"), [("kie", ["kie"]), ("KIE_API_KEY", ["kie"]), ("FAL_KEY", ["fal"])])
def test_one_provider_by_id_or_variable(cli, fakes, name, checked):
    r = cli("keys", "check", name, "--json")
    assert r.code == 0 and list(by_provider(r)) == checked
    assert all(fakes[p].requests == [] for p in fakes if p not in checked)


def test_a_provider_without_a_key_is_a_configuration_error(cli, fakes, monkeypatch):
    monkeypatch.delenv(KEY_ENV["replicate"])
    r = cli("keys", "check", "replicate")
    assert r.code == 3 and "no replicate key is set" in r.err


def test_no_keys_at_all(cli):
    r = cli("keys", "check")
    assert r.code == 3 and "no provider keys are set" in r.err


# -- balances beside the prepaid plans ------------------------------------------------------------


def test_a_balance_is_shown_beside_the_plan_and_changes_it_only_when_asked(cli, fakes, isolated_home):
    from imgroute.home import credits

    assert cli("plans", "set", "kie", "--credits", "6000", "--expires", "2030-01-01").code == 0
    r = cli("keys", "check", "kie")  # no terminal: the plan is not changed, the way to is said
    assert r.code == 0
    assert r.out.strip() == (
        "kie       valid    GET /api/v1/chat/credit; balance 5,000 credits; imgroute tracks 6,000 of 6,000 left, "
        "expiring 2030-01-01; to set the plan to it: imgroute keys check kie --update"
    )
    assert credits.read(isolated_home)["kie"].left == 6000
    r = cli("keys", "check", "kie", "--update", "--json")
    assert r.code == 0 and by_provider(r)["kie"]["plan"] == "updated"
    assert by_provider(r)["kie"]["tracked"] == {"left": 6000, "bought": 6000, "expires": "2030-01-01"}
    balance = credits.read(isolated_home)["kie"]
    assert (balance.left, balance.expires.isoformat()) == (5000, "2030-01-01")  # the expiry is kept
    assert by_provider(cli("keys", "check", "kie", "--json"))["kie"]["plan"] is None  # now the same


def test_at_a_terminal_the_plan_update_is_offered(cli, fakes, isolated_home, monkeypatch):
    from imgroute.cli import keys
    from imgroute.home import credits

    monkeypatch.setattr(keys, "_at_a_terminal", lambda: True)
    cli("plans", "set", "apiframe", "--credits", "60000", "--expires", "2031-06-30")
    r = cli("keys", "check", "apiframe", stdin="y\n")
    assert r.code == 0 and "set the apiframe plan to 52,000 credits left (expiry kept: 2031-06-30)?" in r.out
    assert r.out.endswith("? [y/N]: apiframe: 52,000 prepaid credits, expiring 2031-06-30\n")  # (no echo of "y")
    assert credits.read(isolated_home)["apiframe"].left == 52000
    cli("plans", "set", "apiframe", "--credits", "60000", "--expires", "2031-06-30")
    r = cli("keys", "check", "apiframe", stdin="n\n")
    assert r.code == 0 and credits.read(isolated_home)["apiframe"].left == 60000


def test_a_plan_set_in_config_yaml_is_changed_there(cli, fakes, isolated_home):
    from imgroute.home import credits

    isolated_home.mkdir(exist_ok=True)
    (isolated_home / "config.yaml").write_text("credits:\n  kie: {credits: 500, expires: 2099-01-01}\n")
    r = cli("keys", "check", "kie", "--update")
    assert r.code == 0 and "the plan is set in config.yaml (credits:): change it there" in r.out
    assert credits.read(isolated_home)["kie"].left == 500
