"""Issue 24: what a user of a well-kept command-line tool reaches for: a config view, completion,
a version that says how fresh its prices are, help that reads well."""

from __future__ import annotations

import pytest

from tests.helpers import run_imgroute

# -- imgroute config ------------------------------------------------------------------------------


def test_config_shows_each_setting_and_where_it_comes_from(cli, fakes, isolated_home):
    isolated_home.mkdir(exist_ok=True)
    (isolated_home / "config.yaml").write_text("pricing_max_age_days: 90\nlimits:\n  kie: {concurrency: 7}\n")
    settings = cli("config", "--json").json()["settings"]
    assert settings["home"] == {"value": str(isolated_home), "source": "environment (IMGROUTE_HOME)"}
    assert settings["pricing_max_age_days"] == {"value": 90, "source": "config.yaml"}
    assert settings["limits.kie.concurrency"] == {"value": 7, "source": "config.yaml"}
    assert settings["limits.kie.per_minute"] == {"value": 120.0, "source": "default"}
    assert settings["plans.apiframe"] == {"value": "payg", "source": "default"}
    assert settings["keys.kie"] == {"value": "set", "source": "environment (KIE_API_KEY)"}
    assert settings["base_url.kie"] == {"value": fakes["kie"].url, "source": "environment (IMGROUTE_KIE_BASE_URL)"}
    assert settings["time_scale"] == {"value": "0", "source": "environment (IMGROUTE_TIME_SCALE)"}
    flagged = cli("config", "--plan", "apiframe=growth", "--official-only", "--json").json()["settings"]
    assert flagged["plans.apiframe"] == {"value": "growth", "source": "flag (--plan)"}
    assert flagged["official_only"] == {"value": True, "source": "flag (--official-only)"}
    human = cli("config")
    assert human.code == 0 and "limits.kie.concurrency" in human.out
    for fake in fakes.values():  # keys by name and source, never by value
        assert fake.key not in human.out and fake.key not in cli("config", "--json").out


def test_config_refuses_what_gen_would_refuse(cli):
    r = cli("config", "--plan", "apiframe=platinum")
    assert r.code == 2 and "apiframe has no plan 'platinum'" in r.err


# -- imgroute --version ---------------------------------------------------------------------------


def test_version_says_how_fresh_the_prices_are(cli, isolated_home):
    r = cli("--version")
    assert r.code == 0
    first, bundled = r.out.splitlines()
    assert first.startswith("imgroute ") and bundled == "pricing: bundled table, figures observed up to 2026-12-01"
    isolated_home.mkdir(exist_ok=True)
    (isolated_home / "pricing.yaml").write_text(
        "version: 1\nproviders:\n  kie:\n    plans:\n      pack:\n        usd_per_credit: '0.0045'\n"
        "        source: https://kie.ai/pricing\n        observed: 2026-11-01\n"
    )
    assert f"pricing: {isolated_home / 'pricing.yaml'} over it (plans only)" in cli("--version").out


# -- shell completion -------------------------------------------------------------------------------


def test_completion_scripts_and_what_they_complete(isolated_home):
    script = run_imgroute("--show-completion", "bash")
    assert script.returncode == 0 and "_IMGROUTE_COMPLETE" in script.stdout
    candidates = run_imgroute(
        env={"_IMGROUTE_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "imgroute quote --provider ki"}
    )
    assert "kie/gpt-image-2-text-to-image" in candidates.stdout and "fal" not in candidates.stdout
    plans = run_imgroute(env={"_IMGROUTE_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "imgroute gen --plan api"})
    assert "apiframe=growth" in plans.stdout
    keys = run_imgroute(env={"_IMGROUTE_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "imgroute keys set re"})
    assert "replicate" in keys.stdout
    commands = run_imgroute(env={"_IMGROUTE_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "imgroute con"})
    assert "config" in commands.stdout


# -- help ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["advise", "gen", "quote", "config", "batch"])
def test_a_commands_help_has_no_stray_line_break(cli, command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    r = cli(command, "--help")
    summary = [line.strip() for line in r.out.splitlines() if line.strip()][1]  # after "Usage: ..."
    assert summary.endswith(".") and len(summary) > 40, r.out


# -- usage errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["gen", "x", "--n", "abc"], ["quote", "x", "--bogus"], ["bach"], ["batch", "f", "--concurency", "3"]],
)
def test_usage_errors_are_one_line_not_a_panel(cli, args):
    r = cli(*args)
    assert r.code == 2 and r.err.startswith("error: ") and len(r.err.splitlines()) == 1
    assert "╭" not in r.err and "--help" in r.err


@pytest.mark.parametrize("command", [("gen",), ("batch",), ("jobs",), ("advise",), ("quote",)])
def test_help_names_what_to_write_not_python_types(cli, command):
    r = cli(*command, "--help")
    assert r.code == 0
    assert "<bool>" not in r.out and "<list[str]>" not in r.out and "<str>" not in r.out
