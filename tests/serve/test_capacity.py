"""What serve sizes from the limits at start: its upstream pool, the open files, the limits named as
too slow for many clients at once."""

from __future__ import annotations

import pytest

from imgroute.serve import capacity

LIMITS = {
    "openai": (5, 5.0),
    "kie": (50, 120.0),
    "fal": (2, None),
    "replicate": (10, 600.0),
    "openai:batch": (100, None),
}


def test_the_pool_holds_a_connection_for_every_job_the_keyed_limits_allow_at_once():
    assert capacity.held_open(LIMITS, {"openai", "kie"}) == 55  # (the batch API's jobs hold none)
    assert capacity.upstream_connections(LIMITS, {"openai", "kie"}, workers=4) == 55 + 4 + capacity.POLLING_CONNECTIONS
    assert capacity.held_open(LIMITS, set()) == 0


def test_the_gateways_client_is_sized_so(served):
    pool = served.gateway.services.client._transport._pool  # (httpx keeps it there)
    assert pool._max_connections == served.gateway.connections
    assert served.gateway.connections >= capacity.held_open(served.gateway.limits, served.gateway.keys.available)


def test_limits_too_slow_for_many_clients_are_named_with_the_fix():
    lines = capacity.slow_limits(LIMITS, {"openai", "kie", "fal"})
    assert len(lines) == 2  # openai (5 a minute, 5 at once) and fal (2 at once); kie keeps up
    assert lines[1].startswith("openai takes 5 submits a minute, 5 jobs at once")
    assert "limits: {openai: {concurrency: N, per_minute: N}}" in lines[1]
    assert lines[0].startswith("fal takes 2 jobs at once")
    assert capacity.slow_limits(LIMITS, {"kie", "replicate"}) == []


class FakeResource:
    RLIMIT_NOFILE, RLIM_INFINITY = 7, -1

    def __init__(self, soft, hard, refuse=False):
        self.limits, self.refuse = (soft, hard), refuse

    def getrlimit(self, which):
        return self.limits

    def setrlimit(self, which, limits):
        if self.refuse:
            raise ValueError("not allowed")
        self.limits = limits


@pytest.mark.parametrize(
    ("soft", "hard", "refuse", "after", "warned"),
    [
        (1024, 1_048_576, False, 3000, False),  # raised to what is needed
        (1024, 2048, False, 2048, True),  # raised to the hard limit, and a warning with the figures
        (1024, 2048, True, 1024, True),  # the system refused: a warning
        (4096, 1_048_576, False, 4096, False),  # enough already: untouched
        (-1, -1, False, -1, False),  # unlimited
    ],
)
def test_the_open_file_limit_is_raised_toward_the_need(monkeypatch, soft, hard, refuse, after, warned):
    import sys

    fake = FakeResource(soft, hard, refuse)
    monkeypatch.setitem(sys.modules, "resource", fake)
    warning = capacity.raise_open_files(3000)
    assert fake.limits[0] == after
    assert (warning is not None) == warned
    if warned:
        assert "3000" in warning and "ulimit -n 3000" in warning
