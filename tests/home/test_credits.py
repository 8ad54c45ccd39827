"""Prepaid credits: set, drawn down by each job's credit cost, marked on quotes, forecast by advise."""

from __future__ import annotations

import datetime as dt

from imgroute.home import credits


def test_a_balance_is_drawn_down_by_each_job_and_marked_on_the_quote(cli, fakes, isolated_home):
    expires = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    r = cli("plans", "set", "apiframe", "--credits", "1000", "--expires", expires)
    assert r.code == 0 and "1,000 prepaid credits" in r.out
    for i in range(2):  # Apiframe medium: 9 credits an image (its fake reports creditCost)
        assert cli("gen", f"fox {i}", "--quality", "medium", "--provider", "apiframe", "--out", "out").code == 0
    (balance,) = credits.read(isolated_home).values()
    assert balance.bought == 1000 and balance.left == 1000 - 2 * 9
    quote = cli("quote", "a fox", "--provider", "apiframe", "--json").json()
    assert any("paid from your prepaid apiframe credits (982 left" in note for note in quote["choice"]["notes"])
    # 18 used today: 18 a day for 31 days would use 558, so 424 expire unused
    shown = cli("plans", "show", "--json").json()
    assert shown == [
        {
            "provider": "apiframe",
            "bought": 1000.0,
            "left": 982.0,
            "expires": expires,
            "per_day": 18.0,
            "expiring": 424.0,
        }
    ]
    (tmp := isolated_home / "m.yaml").write_text("- {quality: low, count: 10}\n")
    advised = cli("advise", "--mix", str(tmp), "--json").json()
    assert advised["prepaid"][0]["expiring"] == 424.0
    assert "will expire unused" in cli("advise", "--mix", str(tmp)).out


def test_config_credits_start_a_balance_and_keep_its_draw_down(cli, fakes, isolated_home):
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.yaml").write_text("credits:\n  kie: {credits: 500, expires: 2099-01-01}\n")
    assert cli("gen", "a fox", "--provider", "kie", "--out", "out").code == 0  # 6 credits at 1K
    assert credits.read(isolated_home)["kie"].left == 494
    assert cli("quote", "a fox").code == 0
    assert credits.read(isolated_home)["kie"].left == 494  # unchanged config: the draw-down stays


def test_bad_balances_are_refused(cli, isolated_home):
    assert cli("plans", "set", "openai", "--credits", "10", "--expires", "2099-01-01").code == 2
    assert cli("plans", "set", "kie", "--credits", "10", "--expires", "2001-01-01").code == 2
    assert cli("plans", "set", "kie", "--credits", "10", "--expires", "soon").code == 2
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.yaml").write_text("credits:\n  kie: {credits: 5}\n")
    r = cli("quote", "a fox")
    assert r.code == 3 and "expires" in r.err


# -- credits that would expire unused are drawn first ----------------------------------------------


def prepaid(cli, credits: int = 12000) -> None:
    import datetime as dt

    expires = (dt.date.today() + dt.timedelta(days=25)).isoformat()
    assert cli("plans", "set", "apiframe", "--credits", str(credits), "--expires", expires).code == 0


def test_credits_that_would_expire_unused_win_the_route_at_their_marginal_cost(cli, fakes, isolated_home):
    prepaid(cli)
    data = cli("quote", "a lighthouse", "--quality", "high", "--json").json()
    choice = data["choice"]
    assert choice["offer"] == "apiframe/gpt-image-2"
    assert (choice["cost_usd"], choice["marginal_cost_usd"]) == (0.23, 0.0)
    assert any("ranked at $0.00" in note and "list price, $0.23" in note for note in choice["notes"])
    kie = next(q for q in data["quotes"] if q["offer"] == "kie/gpt-image-2-text-to-image")
    assert kie["cost_usd"] == kie["marginal_cost_usd"] == 0.03  # cash offers: the same figure
    # --max-cost still counts the list value: $0.23 is over $0.10, so Kie's cash wins
    capped = cli("quote", "a lighthouse", "--quality", "high", "--max-cost", "0.10", "--json").json()
    assert capped["choice"]["offer"] == "kie/gpt-image-2-text-to-image"
    r = cli("gen", "a lighthouse", "--quality", "high", "--out", "out", "--json")
    assert r.code == 0 and r.json()["provider"] == "apiframe" and r.json()["cost_usd"] == 0.23
    from imgroute.home import credits

    assert credits.read(isolated_home)["apiframe"].left == 12000 - 23


def test_a_balance_too_small_to_expire_unused_is_not_free(cli, fakes):
    prepaid(cli, credits=10)  # 10 credits, less than one high image needs (23): 13 are paid at the plan's price
    data = cli("quote", "a lighthouse", "--quality", "high", "--json").json()
    apiframe = next(q for q in data["quotes"] if q["offer"] == "apiframe/gpt-image-2")
    assert apiframe["marginal_cost_usd"] == 0.13 and data["choice"]["offer"] == "kie/gpt-image-2-text-to-image"


def test_the_quote_says_why_expiring_credits_won(cli):
    prepaid(cli)
    r = cli("quote", "a lighthouse", "--quality", "high")
    assert "* cheapest: apiframe/gpt-image-2 at $0.00 beyond prepaid credits that would expire unused" in r.out
    assert "(list price $0.23, which --max-cost and budgets count)" in r.out
    assert "$0.03 more than apiframe (paid from credits that would expire)" in r.out
