"""Your own record of each offer: kept as jobs settle, shown by quote with enough of it, and used
by --rank expected and --deadline."""

from __future__ import annotations

import json

from imgroute.home import history
from tests.helpers import KIE, PREVIEW, entry, write_history


def test_a_batch_leaves_each_offers_record(cli, fakes, tmp_path, isolated_home):
    isolated_home.mkdir(exist_ok=True)
    (isolated_home / "config.yaml").write_text("limits:\n  kie: {concurrency: 20, per_minute: 100000}\n")
    rows = "\n".join(json.dumps({"prompt": f"fox {i}", "provider": "kie"}) for i in range(20))
    (tmp_path / "rows.jsonl").write_text(rows)
    assert cli("batch", str(tmp_path / "rows.jsonl"), "--yes", "--json", "--out", "out").code == 0
    fakes["kie"].outcome = "fail"
    assert cli("gen", "a failing fox", "--provider", "kie", "--out", "out").code == 6
    stats = history.read(isolated_home)[KIE]
    assert (stats.attempts, stats.succeeded, stats.failed) == (21, 20, 1) and len(stats.times) == 20
    r = cli("quote", "a fox", "--quality", "high")
    assert "delivered" in r.out and "95% of 21" in r.out and "p50 / p95" in r.out


def test_rank_expected_moves_the_job_off_an_offer_that_seldom_delivers(cli, isolated_home):
    # Kie delivered 4 of 20 here: $0.03 / 0.2 = $0.15 a delivered image, over PiAPI preview's $0.10
    write_history(isolated_home, **{KIE: entry(20, 4), PREVIEW: entry(25, 25)})
    by_price = cli("quote", "a fox", "--quality", "high", "--json").json()
    assert by_price["choice"]["offer"] == KIE
    expected = cli("quote", "a fox", "--quality", "high", "--rank", "expected", "--json").json()
    assert expected["choice"]["offer"] == PREVIEW
    kie = next(q for q in expected["quotes"] if q["offer"] == KIE)
    assert kie["expected_per_image_usd"] == 0.15 and kie["history"]["succeeded"] == 4
    assert expected["choice"]["expected_per_image_usd"] == 0.10


def test_charged_failures_count_in_the_expected_cost(cli, isolated_home):
    # 20 attempts, 10 delivered, $1.00 charged for the failures: $0.03 / 0.5 + $1.00 / 10 images
    write_history(isolated_home, **{KIE: entry(20, 10, charged="1.00")})
    data = cli("quote", "a fox", "--quality", "high", "--rank", "expected", "--json").json()
    kie = next(q for q in data["quotes"] if q["offer"] == KIE)
    assert kie["expected_per_image_usd"] == 0.16


def test_too_little_history_says_so_and_ranks_by_list_price(cli, isolated_home):
    write_history(isolated_home, **{KIE: entry(5, 1)})
    r = cli("quote", "a fox", "--quality", "high", "--rank", "expected")
    assert r.code == 0 and "too little history to rank by expected cost" in r.out
    assert "cheapest: kie" in r.out and "delivered" not in r.out  # no offer has 20 jobs: no columns


def test_a_deadline_leaves_out_offers_whose_p95_is_over_it(cli, isolated_home):
    write_history(isolated_home, **{KIE: entry(20, 20, times=[30.0] * 18 + [900.0, 950.0])})
    data = cli("quote", "a fox", "--quality", "high", "--deadline", "10m", "--json").json()
    kie = next(q for q in data["quotes"] if q["offer"] == KIE)
    assert not kie["eligible"] and "p95" in kie["reasons"][-1]
    assert cli("quote", "a fox", "--deadline", "20m", "--json").json()["choice"]["offer"] == KIE


def test_a_damaged_history_file_is_no_history(cli, isolated_home):
    isolated_home.mkdir(parents=True)
    (isolated_home / history.FILE).write_text('{"kie/gpt-image-2-text-to-image": {"attempts": "many"}')
    assert cli("quote", "a fox", "--rank", "expected").code == 0
