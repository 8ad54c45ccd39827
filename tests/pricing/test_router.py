from decimal import Decimal

from imgroute.models import Constraints, Request
from imgroute.pricing.load import load_table
from imgroute.pricing.router import rank
from imgroute.request import build_target

TABLE = load_table()


def route(quality="high", aspect=None, resolution=None, size=None, n=1, **constraints):
    request = Request(prompt="a lighthouse", quality=quality, target=build_target(size, aspect, resolution), n=n)
    return rank(request, TABLE, Constraints(**constraints))


def order(r):
    return [(q.offer.id, q.eligible) for q in r.quotes]


def test_high_quality_1k_kie_wins_then_preview():
    r = route("high")
    assert r.choice.offer.id == "kie/gpt-image-2-text-to-image"
    assert [q.offer.id for q in r.eligible][:2] == ["kie/gpt-image-2-text-to-image", "piapi/gpt-image-2-preview"]


def test_low_quality_token_offers_win_and_ties_break_by_provider():
    r = route("low")
    assert [q.offer.id for q in r.quotes[:2]] == ["openai/gpt-image-2", "piapi/gpt-image-2"]
    assert r.quotes[0].cost == r.quotes[1].cost


def test_growth_plan_makes_apiframe_cheaper():
    payg = route("medium", plans={})
    growth = route("medium", plans={"apiframe": "growth"})
    cost = {q.offer.id: q.cost for q in growth.quotes}
    assert cost["apiframe/gpt-image-2"] == 9 * Decimal(199) / 52000
    assert {q.offer.id: q.cost for q in payg.quotes}["apiframe/gpt-image-2"] == Decimal("0.09")


def test_ineligible_offers_come_last_with_reasons():
    r = route("high", aspect="16:9", resolution="4K")
    last = r.quotes[-1]
    assert last.offer.id == "apiframe/gpt-image-2"
    assert last.reasons == ("aspect 16:9 not offered (offers 1:1, 3:2, 2:3)",)


def test_provider_and_exclude_constraints():
    r = route(providers=frozenset({"fal", "openai"}), exclude=frozenset({"openai"}))
    assert r.choice.offer.id == "fal/openai/gpt-image-2"
    reasons = {q.offer.id: q.reasons for q in r.quotes}
    assert reasons["kie/gpt-image-2-text-to-image"] == ("not among --provider fal, openai",)
    assert reasons["openai/gpt-image-2"] == ("excluded by --exclude",)


def test_max_cost_rules_out_and_marks_priced_out():
    r = route("high", max_cost=Decimal("0.05"))
    assert r.choice.offer.id == "kie/gpt-image-2-text-to-image"
    r = route("high", max_cost=Decimal("0.01"))
    assert r.choice is None and r.only_priced_out


def test_no_offer_for_impossible_shape():
    r = route(aspect="5:1")
    assert r.choice is None and not r.only_priced_out


def test_order_is_deterministic():
    assert order(route("medium")) == order(route("medium"))
