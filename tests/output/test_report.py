"""The route text every job journals (report.route_text) is the quote's JSON. (Every `--json`
shape's keys, and real output of each, are checked against its schema in tests/output/test_schemas.py.)"""

from __future__ import annotations

import json


def test_the_journaled_route_text_is_the_quote_json_and_rankings_alike_share_it():
    from imgroute.models import Constraints
    from imgroute.output.report import _quotes_text, route_json, route_text
    from imgroute.pricing.load import load_table
    from imgroute.pricing.router import RouteCache
    from imgroute.request import build_request

    routes = RouteCache(load_table())
    first = routes.rank(build_request("a lighthouse", quality="high"), Constraints())
    second = routes.rank(build_request("a lighthousf", quality="high"), Constraints())  # alike but for a word
    assert second.quotes is first.quotes
    for route in (first, second):
        assert json.loads(route_text(route)) == route_json(route)
    assert _quotes_text(second.quotes)[1] is _quotes_text(first.quotes)[1]  # written out once
    assert json.loads(route_text(second))["request"]["prompt"] == "a lighthousf"
    impossible = routes.rank(build_request("a lighthouse", size="1000x1000", quality="high"), Constraints())
    assert impossible.choice is None and json.loads(route_text(impossible)) == route_json(impossible)
    assert json.loads(route_text(impossible))["choice"] is None
