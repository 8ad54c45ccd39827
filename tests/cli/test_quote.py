"""`imgroute quote`, `providers` and `pricing` through the real entry point."""

import pytest


def test_quote_table_marks_the_winner_and_says_why_others_lost(cli):
    r = cli("quote", "a lighthouse", "--quality", "high")
    assert r.code == 0, r.err
    winner = next(line for line in r.out.splitlines() if line.startswith("│ *"))
    assert "kie" in winner and "$0.03" in winner
    assert "$0.07 more than kie" in r.out
    assert "cheapest: kie/gpt-image-2-text-to-image at $0.03" in r.out
    assert r.err == ""


def test_quote_json_contract(cli):
    r = cli("quote", "a lighthouse", "--quality", "high", "--json")
    assert r.code == 0
    data = r.json()
    assert set(data) == {"request", "choice", "quotes", "caveats"}
    assert data["request"]["quality"] == "high" and data["request"]["prompt"] == "a lighthouse"
    assert data["choice"]["provider"] == "kie" and data["choice"]["cost_usd"] == 0.03
    first = data["quotes"][0]
    for key in ("provider", "model", "eligible", "cost_usd", "per_image_usd", "output", "reasons"):
        assert key in first
    assert set(first["output"]) >= {"width", "height", "quality"}
    costs = [q["cost_usd"] for q in data["quotes"] if q["eligible"]]
    assert costs == sorted(costs)
    assert [q["eligible"] for q in data["quotes"]] == sorted((q["eligible"] for q in data["quotes"]), reverse=True)


@pytest.mark.parametrize("quality", ["low", "medium", "high"])
@pytest.mark.parametrize(
    ("aspect", "resolution"), [("1:1", "1K"), ("16:9", "2K"), ("9:16", "4K"), ("3:2", "1K"), ("4:3", "4K")]
)
def test_quote_answers_every_tier_and_shape(cli, quality, aspect, resolution):
    r = cli("quote", "a lighthouse", "--quality", quality, "--aspect", aspect, "--resolution", resolution, "--json")
    assert r.code == 0, r.err
    data = r.json()
    choice = data["choice"]
    assert choice["eligible"] and choice["cost_usd"] > 0
    # The winner is the cheapest eligible quote, and its breakdown ends at its cost.
    assert choice["cost_usd"] == min(q["cost_usd"] for q in data["quotes"] if q["eligible"])


def test_explain_shows_the_arithmetic(cli):
    r = cli("quote", "a lighthouse", "--quality", "high", "--explain", "--plan", "apiframe=growth")
    assert "output: 1 image x 7,024 tokens (1024x1024 high) x $30/1M = $0.21072" in r.out
    assert "request $0.210765 rounded up to $0.01 = $0.22" in r.out
    assert "23 credits x $0.00382692/credit (apiframe growth) = $0.088019" in r.out
    assert "6 credits x $0.005/credit (kie standard) = $0.03" in r.out


def test_prompt_from_stdin(cli):
    r = cli("quote", "--quality", "low", "--json", stdin="a lighthouse from stdin\n")
    assert r.code == 0
    assert r.json()["request"]["prompt"] == "a lighthouse from stdin"


def test_plan_from_config(cli, isolated_home):
    isolated_home.mkdir()
    (isolated_home / "config.yaml").write_text("plans:\n  apiframe: growth\n")
    data = cli("quote", "x", "--quality", "high", "--json").json()
    apiframe = next(q for q in data["quotes"] if q["provider"] == "apiframe")
    assert apiframe["plan"] == "growth" and apiframe["cost_usd"] == 0.088019


def test_user_pricing_file_in_home_is_merged(cli, isolated_home):
    isolated_home.mkdir()
    (isolated_home / "pricing.yaml").write_text(
        "version: 1\noffers:\n  - provider: piapi\n    model: gpt-image-2-preview\n    price: {usd_per_image: '0.02'}\n"
    )
    data = cli("quote", "x", "--quality", "high", "--json").json()
    assert data["choice"]["model"] == "gpt-image-2-preview" and data["choice"]["cost_usd"] == 0.02


def test_no_offer_exits_4_and_still_shows_reasons(cli):
    r = cli("quote", "x", "--aspect", "5:1", "--json")
    assert r.code == 4
    data = r.json()
    assert data["choice"] is None and all(q["reasons"] for q in data["quotes"])
    assert r.err.startswith("error: no offer can deliver this request")
    assert len(r.err.strip().splitlines()) == 1


def test_max_cost_refusal_exits_8(cli):
    r = cli("quote", "x", "--quality", "high", "--max-cost", "0.01")
    assert r.code == 8
    assert "cheapest: $0.03" in r.err


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["quote", "x", "--size", "0x0"], 2, "--size '0x0' has a zero edge"),
        (["quote", "x", "--size", "abc"], 2, "--size 'abc' is not WIDTHxHEIGHT"),
        (["quote", "x", "--aspect", "4:0"], 2, "--aspect '4:0' has a zero side"),
        (["quote", "x", "--aspect", "wide"], 2, "--aspect 'wide' is not W:H"),
        (["quote", "x", "--resolution", "8K"], 2, "--resolution '8K' is not a tier"),
        (["quote", "x", "--quality", "ultra"], 2, "--quality 'ultra' is not a tier"),
        (["quote", "x", "--size", "1024x1024", "--aspect", "1:1"], 2, "--size cannot be combined"),
        (["quote", "x", "--n", "0"], 2, "--n 0 is out of range"),
        (["quote", "x", "--n", "10000"], 2, "--n 10000 is out of range"),
        (["quote", "   "], 2, "the prompt is empty"),
        (["quote", "x", "--provider", "midjourney"], 2, "unknown provider 'midjourney' in --provider"),
        (["quote", "x", "--exclude", "dalle"], 2, "unknown provider 'dalle' in --exclude"),
        (["quote", "x", "--plan", "apiframe"], 2, "--plan 'apiframe' is not PROVIDER=PLAN"),
        (["quote", "x", "--plan", "apiframe=platinum"], 2, "apiframe has no plan 'platinum'"),
        (["quote", "x", "--plan", "nobody=growth"], 2, "unknown provider 'nobody'"),
        (["quote", "x", "--max-cost", "-1"], 2, "--max-cost '-1' is negative"),
        (["quote", "x", "--max-cost", "lots"], 2, "--max-cost 'lots' is not an amount"),
        (["quote", "x", "--pricing", "/nonexistent/pricing.yaml"], 3, "/nonexistent/pricing.yaml does not exist"),
    ],
)
def test_bad_input_is_one_line_with_the_contract_exit_code(cli, args, code, needle):
    r = cli(*args)
    assert r.code == code
    assert r.out == ""
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in r.err


def test_empty_stdin_prompt(cli):
    r = cli("quote", stdin="")
    assert r.code == 2 and "the prompt is empty" in r.err


def test_unreadable_pricing_file_exits_3(cli, tmp_path):
    binary = tmp_path / "p.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for path in (tmp_path, binary):  # a directory, then bytes that are not UTF-8
        r = cli("quote", "x", "--pricing", str(path))
        assert r.code == 3 and r.out == ""
        assert r.err.startswith(f"error: cannot read pricing file {path}") and len(r.err.splitlines()) == 1


def test_bad_config_file_exits_3(cli, isolated_home):
    isolated_home.mkdir()
    (isolated_home / "config.yaml").write_text("plans:\n  apiframe: diamond\n")
    r = cli("quote", "x")
    assert r.code == 3
    assert "config.yaml: plans.apiframe: apiframe has no plan 'diamond'" in r.err


def test_providers_matrix(cli):
    r = cli("providers", "--json")
    assert r.code == 0
    rows = {(row["provider"], row["model"]): row for row in r.json()}
    assert rows[("kie", "gpt-image-2-text-to-image")]["sizes"].startswith("1:1 1K/2K; 16:9 1K/2K/4K")
    assert rows[("apiframe", "gpt-image-2")]["prompt_max_chars"] == 2000
    assert "provider" in cli("providers").out


def test_pricing_lists_sources_and_warns_when_stale(cli):
    r = cli("pricing", "--json", "--max-age", "30")
    assert r.code == 0
    data = r.json()
    assert all(row["source"].startswith("https://") for row in data["rows"])
    assert any(row["stale"] for row in data["rows"])
    assert r.err.startswith("warning: ") and "re-check their sources" in r.err


def test_pricing_no_warning_with_generous_age(cli):
    r = cli("pricing", "--max-age", "100000")
    assert r.code == 0 and r.err == ""
    assert "https://kie.ai/pricing" in r.out


def test_pricing_validate(cli, tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text(
        "version: 1\noffers:\n  - provider: kie\n    model: gpt-image-2-text-to-image\n"
        "    price: {credits_per_image: {1K: 5}}\n"
    )
    r = cli("pricing", "validate", str(good))
    assert r.code == 0 and "ok:" in r.out and "kie/gpt-image-2-text-to-image" in r.out
    good.write_text(
        "version: 1\noffers:\n  - provider: kie\n    model: gpt-image-2-text-to-image\n    price: {model: magic}\n"
    )
    r = cli("pricing", "validate", str(good))
    assert r.code == 3 and "price.model: 'magic' is not one of" in r.err
