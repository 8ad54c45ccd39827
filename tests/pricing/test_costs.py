"""Each price model pinned to the providers' published points."""

from decimal import Decimal

import pytest

from imgroute.models import Request, Target
from imgroute.pricing.costs import assess
from imgroute.pricing.load import load_table
from imgroute.request import build_target

TABLE = load_table()
OFFERS = {o.id: o for o in TABLE.offers}


def cost(offer_id, quality="high", target=None, n=1, plan=None, prompt="a lighthouse"):
    offer = OFFERS[offer_id]
    request = Request(prompt=prompt, quality=quality, target=target or build_target(None, None, None), n=n)
    return assess(request, offer, TABLE.plan(offer.provider, plan))


def exact(w, h):
    return build_target(f"{w}x{h}", None, None)


def output_only(a):
    """The image-output part of a token estimate (published examples exclude prompt tokens)."""
    line = a.breakdown[0].text
    assert line.startswith("output:")
    return Decimal(line.rsplit("$", 1)[1])


@pytest.mark.parametrize(
    ("size", "quality", "published"),
    [
        ((1024, 1024), "low", "0.006"),
        ((1024, 1024), "medium", "0.053"),
        ((1024, 1024), "high", "0.211"),
        ((1536, 1024), "low", "0.005"),
        ((1536, 1024), "medium", "0.041"),
        ((1536, 1024), "high", "0.165"),
        ((1024, 1536), "high", "0.165"),
    ],
)
def test_openai_matches_its_published_examples(size, quality, published):
    a = cost("openai/gpt-image-2", quality, exact(*size))
    assert output_only(a).quantize(Decimal("0.001")) == Decimal(published)
    assert a.notes == ()


def test_openai_adds_prompt_tokens_at_the_text_rate():
    a = cost("openai/gpt-image-2", "high", exact(1024, 1024))
    assert a.cost == Decimal("0.210765")  # 7024*30/1M + 9*5/1M


@pytest.mark.parametrize(
    ("size", "low", "medium", "high"),
    [
        ((1024, 768), "0.01", "0.04", "0.15"),
        ((1024, 1024), "0.01", "0.06", "0.22"),
        ((1024, 1536), "0.01", "0.05", "0.17"),
        ((1920, 1088), "0.01", "0.04", "0.16"),  # fal's table says 1920x1080, an invalid size
        ((2560, 1440), "0.01", "0.06", "0.23"),
        ((3840, 2160), "0.02", "0.11", "0.41"),
    ],
)
def test_fal_matches_its_published_table(size, low, medium, high):
    for quality, published in (("low", low), ("medium", medium), ("high", high)):
        assert cost("fal/openai/gpt-image-2", quality, exact(*size)).cost == Decimal(published)


def test_fal_rounds_each_request_up_to_the_cent():
    a = cost("fal/openai/gpt-image-2", "low", exact(1024, 1024), n=3)
    # 3 x 196 tokens x $30/1M = 0.01764, + 9 prompt tokens = 0.017685 -> 0.02
    assert a.cost == Decimal("0.02")
    assert "rounded up" in " ".join(line.text for line in a.breakdown)


@pytest.mark.parametrize(
    ("quality", "credits", "payg", "growth"),
    [("low", 4, "0.04", "0.015"), ("medium", 9, "0.09", "0.034"), ("high", 23, "0.23", "0.088")],
)
def test_apiframe_credits_on_both_plans(quality, credits, payg, growth):
    on_payg = cost("apiframe/gpt-image-2", quality)
    on_growth = cost("apiframe/gpt-image-2", quality, plan="growth")
    assert on_payg.cost == Decimal(payg)
    assert on_growth.cost.quantize(Decimal("0.001")) == Decimal(growth)
    assert on_growth.cost == credits * Decimal(199) / Decimal(52000)


@pytest.mark.parametrize(
    ("aspect", "resolution", "credits", "usd"),
    [("1:1", "1K", 6, "0.03"), ("16:9", "2K", 10, "0.05"), ("16:9", "4K", 16, "0.08")],
)
def test_kie_credits_by_resolution(aspect, resolution, credits, usd):
    a = cost("kie/gpt-image-2-text-to-image", "low", build_target(None, aspect, resolution))
    assert a.cost == Decimal(usd)
    assert a.quality == "high"  # no quality knob: delivers high whatever was asked
    assert f"{credits} credits/image" in a.breakdown[0].text


def test_kie_makes_one_image_per_task():
    a = cost("kie/gpt-image-2-text-to-image", n=3)
    assert a.requests == (1, 1, 1)
    assert a.cost == Decimal("0.09")


def test_piapi_preview_is_flat_per_image_at_any_size_and_quality():
    assert cost("piapi/gpt-image-2-preview", "low").cost == Decimal("0.10")
    assert cost("piapi/gpt-image-2-preview", "high", build_target(None, "16:9", "4K")).cost == Decimal("0.10")
    assert cost("piapi/gpt-image-2-preview", n=4).cost == Decimal("0.40")


def test_piapi_token_model_notes_its_own_disagreeing_estimate():
    a = cost("piapi/gpt-image-2", "high", exact(1024, 1024))
    assert a.cost == Decimal("0.210765")
    assert any("$0.125" in note for note in a.notes)


def test_a_job_larger_than_one_request_is_split_and_each_request_priced_on_its_own():
    # Issue 13: n=5 used to rule fal out ("more than the 4 fal makes per request").
    a = cost("fal/openai/gpt-image-2", "low", n=5)
    assert a.reasons == () and a.requests == (4, 1)
    assert a.cost == Decimal("0.03") + Decimal("0.01")  # 4 x $0.006 -> $0.03, 1 x $0.006 -> $0.01
    assert cost("openai/gpt-image-2", "low", n=11).requests == (10, 1)


def test_prompt_too_long_for_apiframe():
    a = cost("apiframe/gpt-image-2", prompt="x" * 2001)
    assert a.reasons == ("prompt is 2,001 characters; apiframe takes at most 2,000",)


def test_quality_tier_missing():
    offer = OFFERS["openai/gpt-image-2"]
    low_only = offer._replace(qualities=("low",))
    a = assess(
        Request(prompt="x", quality="high", target=Target(aspect=exact(1, 1).aspect, resolution="1K")),
        low_only,
        TABLE.plan("openai", None),
    )
    assert a.reasons == ("quality high not offered (only low)",)
