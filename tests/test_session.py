"""What every door that sends checks first: IMGROUTE_TIME_SCALE (which shortens every wait) is for
the local fakes only, and refused while a key would reach a real provider."""

from __future__ import annotations

from tests.helpers import only


def test_a_time_scale_left_set_against_a_real_origin_is_refused(cli, fakes, monkeypatch):
    monkeypatch.setenv("IMGROUTE_TIME_SCALE", "0.1")
    assert cli("gen", "a fox", "--out", "out", *only(fakes, "kie")).code == 0  # every keyed provider is a fake
    monkeypatch.delenv("IMGROUTE_OPENAI_BASE_URL")  # the OpenAI key now reaches api.openai.com
    for args in (("gen", "a fox", "--out", "out", *only(fakes, "kie")), ("jobs", "resume", "--all")):
        r = cli(*args)
        assert r.code == 3 and len(r.err.splitlines()) == 1
        assert "IMGROUTE_TIME_SCALE=0.1" in r.err and "https://api.openai.com" in r.err
    assert fakes["openai"].requests == []
    monkeypatch.setenv("IMGROUTE_TIME_SCALE", "fast")
    r = cli("gen", "a fox", "--out", "out")
    assert r.code == 3 and "IMGROUTE_TIME_SCALE='fast' is not a number from 0 to 1" in r.err
    assert cli("quote", "a fox").code == 0  # quote sends nothing: no waits to shorten
