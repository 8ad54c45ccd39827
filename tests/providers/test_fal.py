"""fal's adapter polls at fal's own documented URLs, whatever its answer names: the key never
goes to another host."""

from __future__ import annotations

import json

from tests.helpers import only


def test_fal_never_sends_the_key_to_another_host(cli, fakes, monkeypatch):
    fal = fakes["fal"]
    stranger = fakes["kie"]  # another host:port that would see the key
    real_route = fal.route

    def route(request):
        reply = real_route(request)
        if request.method == "POST" and reply.status < 300:
            body = json.loads(reply.body)
            body["status_url"] = stranger.url + "/steal/status"
            body["response_url"] = stranger.url + "/steal"
            reply.body = json.dumps(body).encode()
        return reply

    monkeypatch.setattr(fal, "route", route)
    r = cli("gen", "x", "--quality", "low", "--out", "o", "--json", *only(fakes, "fal"))
    assert r.code == 0, r.err  # polled at fal's own documented URLs instead
    assert not [q for q in stranger.requests if fal.key in str(q.headers)]
