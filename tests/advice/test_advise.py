"""`imgroute advise`: a month priced every way, checked against hand calculations from
pricing.yaml (Kie 6 credits at $0.005 for 1K, Apiframe 23 credits at $0.01 or $199 for 52,000 on
Growth, Replicate $0.128 and PiAPI's preview $0.10 flat for high)."""

from __future__ import annotations

import json

import pytest


def advise(cli, tmp_path, mix: str, *args):
    (tmp_path / "month.yaml").write_text(mix)
    r = cli("advise", "--mix", str(tmp_path / "month.yaml"), "--json", *args)
    assert r.code == 0, r.err
    return r.json()


def by(data, offer, plan):
    return next(m for m in data["by_offer"] if m["offer"] == offer and m["plan"] == plan)


def test_a_month_of_high_1k_images(cli, tmp_path):
    data = advise(cli, tmp_path, "- {quality: high, count: 10}\n")
    assert data["routed_usd"] == data["floor_usd"] == 0.30  # Kie: 10 x 6 credits x $0.005
    assert by(data, "kie/gpt-image-2-text-to-image", "standard")["usd"] == 0.30
    assert by(data, "piapi/gpt-image-2-preview", "payg")["usd"] == 1.00
    assert by(data, "replicate/openai/gpt-image-2", "payg")["usd"] == 1.28
    assert by(data, "apiframe/gpt-image-2", "payg")["usd"] == 2.30  # 230 credits x $0.01
    growth = by(data, "apiframe/gpt-image-2", "growth")
    assert growth["usd"] == 199.0 and growth["credits"] == 230 and growth["unused_credits"] == 51770
    (plan,) = data["break_even"]
    # $199 / $0.03 = 6,634 images to pay off, but 52,000 credits cover only 2,260 of them
    assert plan["images_per_month"] is None and "cover 2,260 images" in plan["why"] and "6,634" in plan["why"]
    batch = by(data, "openai/gpt-image-2-batch", "payg")
    assert batch["usd"] is None and "--deadline" in batch["excluded"]
    assert data["cheapest_single"]["offer"] == "kie/gpt-image-2-text-to-image"


def test_a_plan_that_pays_off_and_rows_a_route_cannot_serve(cli, tmp_path):
    mix = "- {quality: high, size: 1536x1024, count: 2000}\n"
    mix += '- {quality: high, aspect: "16:9", resolution: 2K, count: 10}\n'
    data = advise(cli, tmp_path, mix)
    assert data["routed_usd"] == 200.50  # 2,000 x $0.10 (PiAPI preview) + 10 x $0.05 (Kie 2K)
    assert by(data, "piapi/gpt-image-2-preview", "payg")["usd"] == 201.0  # the cheapest single route
    assert data["cheapest_single"]["saving_usd"] == 0.5
    kie = by(data, "kie/gpt-image-2-text-to-image", "standard")
    assert kie["usd"] is None and kie["unservable_rows"] == [1]  # exact pixels Kie does not publish
    apiframe = by(data, "apiframe/gpt-image-2", "growth")
    assert apiframe["unservable_rows"] == [2] and apiframe["credits"] == 46000
    (plan,) = data["break_even"]
    # $199 / $0.10 = 1,990 images; 1,990 x 23 credits = 45,770 <= 52,000
    assert plan["images_per_month"] == 1990 and plan["past_it"] is True and plan["unused_credits"] == 6000


def test_the_terminal_chart_and_the_plot(cli, tmp_path):
    (tmp_path / "month.csv").write_text(
        "quality,aspect,resolution,n,count,images\nhigh,,,1,300,\nmedium,16:9,2K,1,200,\nlow,,,4,100,\nmedium,,,1,50,1\n"
    )
    r = cli("advise", "--mix", str(tmp_path / "month.csv"), "--plot", str(tmp_path / "month.png"))
    assert r.code == 0, r.err
    assert "with imgroute's routing" in r.out and "█" in r.out and "routing saves" in r.out
    assert (tmp_path / "month.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "month.png").stat().st_size > 20_000


BAD = [
    ("- {quality: ultra, count: 1}\n", "row 1: --quality 'ultra'"),
    ("- {quality: high}\n", "row 1: count"),
    ("- {quality: high, count: 5, colour: red}\n", "unknown field 'colour'"),
    ("quality: high\n", "must be a list"),
    ("- {count: -3}\n", "count -3 is not a number of zero or more"),
]


@pytest.mark.parametrize(("mix", "problem"), BAD)
def test_a_bad_mix_is_one_line_and_exit_2(cli, tmp_path, mix, problem):
    (tmp_path / "month.yaml").write_text(mix)
    r = cli("advise", "--mix", str(tmp_path / "month.yaml"))
    assert r.code == 2 and problem in r.err and "Traceback" not in r.err


def test_history_from_the_ledger_is_scaled_to_a_month(cli, fakes, tmp_path):
    for i in range(3):
        assert cli("gen", f"fox {i}", "--provider", "kie", "--out", "out").code == 0
    data = json.loads(cli("advise", "--json").out)
    assert data["source"].startswith("3 jobs since")
    # three Kie 1K jobs in 30 days, priced now: 3 x $0.03
    assert data["routed_usd"] == pytest.approx(0.09, abs=1e-6)
    empty = cli("advise", "--since", "2999-01-01")
    assert empty.code == 2 and "--mix" in empty.err


def test_spend_savings_prices_the_ledgers_jobs_at_the_default_and_the_cheapest_offer(cli, fakes, tmp_path):
    fakes["kie"].inject("submit", status=500, times=1)  # one job's first try fails at Kie, then goes through
    for i in range(3):
        assert cli("gen", f"fox {i}", "--exclude", "fal,piapi,apiframe,replicate", "--out", "out").code == 0
    fakes["openai"].outcome = "moderate"
    assert cli("gen", "a refused fox", "--provider", "openai", "--out", "out").code == 6  # not counted
    data = cli("spend", "--savings", "--json").json()
    (month,) = data["savings"]

    def at_openai(prompt: str) -> float:
        quoted = cli("quote", prompt, "--provider", "openai/gpt-image-2", "--json").json()
        return quoted["choice"]["cost_usd"]

    # fox 0 fell back from Kie to OpenAI (its actual cost, from usage, is within a few tokens of the
    # estimate); foxes 1 and 2 cost Kie's $0.03
    assert month["jobs"] == 3 and month["spent_usd"] == pytest.approx(at_openai("fox 0") + 0.06, abs=1e-4)
    everything_at_openai = sum(at_openai(f"fox {i}") for i in range(3))
    assert month["default_offer"] == "openai/gpt-image-2"
    assert month["at_default_usd"] == pytest.approx(everything_at_openai, abs=1e-6)
    assert month["saved_vs_default_usd"] == pytest.approx(everything_at_openai - month["spent_usd"], abs=1e-6)
    # all three at Kie would have been $0.09: the fallback made routing cost more than that, and it says so
    assert month["cheapest_offer"] == "kie/gpt-image-2-text-to-image" and month["at_cheapest_usd"] == 0.09
    assert month["saved_vs_cheapest_usd"] == pytest.approx(0.09 - month["spent_usd"], abs=1e-6)
    assert month["saved_vs_cheapest_usd"] < 0
    table = cli("spend", "--savings")
    assert "at the default offer" in table.out and "openai/gpt-image-2" in table.out


def test_the_default_offer_is_configurable_and_checked(cli, isolated_home):
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.yaml").write_text("default_offer: fal/openai/gpt-image-9\n")
    r = cli("spend", "--savings")
    assert r.code == 3 and "default_offer" in r.err and "fal/openai/gpt-image-2" in r.err


def test_a_new_user_with_no_history_gets_plain_answers(cli, tmp_path):
    assert cli("spend", "--savings", "--json").json() == {"savings": []}
    assert "no succeeded jobs" in cli("spend", "--savings").out
    missing = cli("advise", "--mix", str(tmp_path / "nope.yaml"))
    assert missing.code == 2 and "does not exist" in missing.err and "Errno" not in missing.err
    typo = cli("plans", "set", "apifram", "--credits", "10", "--expires", "2099-01-01")
    assert typo.code == 2 and "unknown provider 'apifram'" in typo.err and "apiframe" in typo.err
