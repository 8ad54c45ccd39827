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
