"""Sizes learned from delivered images: an exact --size reaches a preset offer whose pixels are
unpublished once that preset has delivered exactly that size (Kie's 1:1 1K, here)."""

from __future__ import annotations

import json

from imgroute.home import learned_sizes
from tests.helpers import KIE


def kie_quote(cli, *args):
    r = cli("quote", "a fox", *args, "--json")
    assert r.code in (0, 4), r.err
    return r.json(), next(q for q in r.json()["quotes"] if q["offer"] == KIE)


def test_an_exact_size_reaches_kie_once_kie_has_delivered_it(cli, fakes, isolated_home):
    _, kie = kie_quote(cli, "--size", "1024x1024")
    assert not kie["eligible"] and "sizes unpublished" in kie["reasons"][0]

    first = cli("gen", "a fox", "--aspect", "1:1", "--resolution", "1K", "--provider", "kie", "--json")
    assert first.code == 0, first.err
    stored = json.loads((isolated_home / learned_sizes.FILE).read_text())
    assert stored == {KIE: {"1:1": {"1K": {"1024x1024": 1}}}}
    assert (isolated_home / learned_sizes.FILE).stat().st_mode & 0o077 == 0

    data, kie = kie_quote(cli, "--size", "1024x1024", "--quality", "medium")
    assert kie["eligible"], kie["reasons"]
    assert kie["output"]["seen_before"] == 1 and kie["output"]["exact_size"] is False
    assert data["choice"]["offer"] == KIE  # the cheapest, now that it can be asked
    assert any("delivered the one time before (learned here)" in n for n in data["choice"]["notes"])
    table = cli("quote", "a fox", "--size", "1024x1024", "--quality", "medium")
    assert "1024x1024 (seen 1x)" in table.out

    again = cli("gen", "a fox", "--size", "1024x1024", "--quality", "medium", "--json")
    assert again.code == 0, again.err
    assert again.json()["provider"] == "kie" and again.json()["images"][0]["verified"]
    assert json.loads((isolated_home / learned_sizes.FILE).read_text())[KIE]["1:1"]["1K"] == {"1024x1024": 2}
    assert fakes["kie"].charges == 2


def test_a_tier_that_delivered_different_sizes_teaches_nothing(cli, isolated_home):
    isolated_home.mkdir(parents=True)
    (isolated_home / learned_sizes.FILE).write_text(
        json.dumps({KIE: {"1:1": {"1K": {"1024x1024": 5, "1000x1000": 1}}}})
    )
    _, kie = kie_quote(cli, "--size", "1024x1024")
    assert not kie["eligible"]
    _, by_tier = kie_quote(cli, "--aspect", "1:1", "--resolution", "1K")
    assert by_tier["output"]["seen_before"] == 0  # nominal again


def test_a_published_size_is_never_overridden_by_what_was_seen(cli, isolated_home):
    isolated_home.mkdir(parents=True)
    apiframe = {"apiframe/gpt-image-2": {"1:1": {"1K": {"1000x1000": 9}}}}
    (isolated_home / learned_sizes.FILE).write_text(json.dumps(apiframe))
    r = cli("quote", "a fox", "--size", "1000x1000", "--json")
    quote = next(q for q in r.json()["quotes"] if q["offer"] == "apiframe/gpt-image-2")
    assert not quote["eligible"]  # 1:1 1K is published as 1024x1024


def test_a_damaged_file_is_no_observations_and_is_rewritten_whole(cli, fakes, isolated_home):
    isolated_home.mkdir(parents=True)
    (isolated_home / learned_sizes.FILE).write_text('{"kie/gpt-image-2-text-to-image": [1, 2')
    _, kie = kie_quote(cli, "--size", "1024x1024")
    assert not kie["eligible"]
    r = cli("gen", "a fox", "--aspect", "1:1", "--resolution", "1K", "--provider", "kie", "--json")
    assert r.code == 0, r.err
    assert json.loads((isolated_home / learned_sizes.FILE).read_text()) == {KIE: {"1:1": {"1K": {"1024x1024": 1}}}}
    (isolated_home / learned_sizes.FILE).write_text(json.dumps({KIE: {"1:1": {"1K": {"1024x1024": "many"}}}}))
    assert not kie_quote(cli, "--size", "1024x1024")[1]["eligible"]


def test_a_batch_records_every_row_once(cli, fakes, isolated_home, tmp_path):
    rows = "\n".join(json.dumps({"prompt": f"fox {i}", "provider": "kie", "aspect": "16:9"}) for i in range(4))
    (tmp_path / "rows.jsonl").write_text(rows)
    r = cli("batch", "rows.jsonl", "--yes", "--json")
    assert r.code == 0, r.err
    stored = json.loads((isolated_home / learned_sizes.FILE).read_text())
    assert stored[KIE]["16:9"] == {"1K": {"1024x576": 4}}
