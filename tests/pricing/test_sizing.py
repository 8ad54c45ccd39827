import pytest

from imgroute.pricing.load import load_table
from imgroute.pricing.sizing import best_size, fit
from imgroute.request import build_target

TABLE = load_table()
OPENAI = {o.id: o for o in TABLE.offers}["openai/gpt-image-2"].sizes
KIE = {o.id: o for o in TABLE.offers}["kie/gpt-image-2-text-to-image"].sizes
APIFRAME = {o.id: o for o in TABLE.offers}["apiframe/gpt-image-2"].sizes


@pytest.mark.parametrize(
    ("aspect", "resolution", "size"),
    [
        ("1:1", "1K", (1024, 1024)),
        ("1:1", "2K", (2048, 2048)),
        ("1:1", "4K", (2880, 2880)),  # the largest square under 8,294,400 px
        ("16:9", "1K", (1280, 720)),
        ("16:9", "2K", (2560, 1440)),
        ("16:9", "4K", (3840, 2160)),
        ("9:16", "4K", (2160, 3840)),
        ("3:2", "1K", (1248, 832)),
        ("4:3", "1K", (1152, 864)),
        ("3:1", "4K", (3840, 1280)),  # capped by the 3840 px edge; 4.9 MP still reaches 4K
        ("21:9", "2K", (3024, 1296)),
    ],
)
def test_pixel_offers_get_the_largest_exact_ratio_size_in_the_budget(aspect, resolution, size):
    delivery, reason = fit(build_target(None, aspect, resolution), OPENAI)
    assert reason is None
    assert (delivery.width, delivery.height) == size
    assert delivery.width * 1.0 / delivery.height == pytest.approx(eval(aspect.replace(":", "/")))


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ("1920x1080", "1920x1080: edges must be multiples of 16 (nearest valid: 1920x1088)"),
        ("512x512", "512x512: 262,144 px is below the 655,360 px minimum"),
        ("4096x1024", "4096x1024: aspect 4:1 is beyond the 3:1 limit"),
        ("3856x1296", "3856x1296: the long edge is over 3840 px"),
        ("2896x2896", "2896x2896: 8,386,816 px is above the 8,294,400 px maximum"),
    ],
)
def test_pixel_offers_explain_invalid_sizes(size, reason):
    assert fit(build_target(size, None, None), OPENAI) == (None, reason)


def test_ratio_beyond_limit_is_refused_by_pixel_offers():
    assert fit(build_target(None, "4:1", "1K"), OPENAI) == (None, "aspect 4:1 is beyond the 3:1 limit")


def test_ratio_with_no_valid_size_is_refused():
    delivery, reason = fit(build_target(None, "1000:999", "1K"), OPENAI)
    assert delivery is None and "no size of exactly 1000:999" in reason


def test_experimental_sizes_are_flagged():
    delivery, _ = fit(build_target(None, "16:9", "4K"), OPENAI)
    assert delivery.experimental
    delivery, _ = fit(build_target(None, "16:9", "2K"), OPENAI)
    assert not delivery.experimental


def test_kie_presets_and_their_holes():
    delivery, reason = fit(build_target(None, "16:9", "4K"), KIE)
    assert reason is None and delivery.resolution == "4K" and not delivery.exact
    assert delivery.label() == "16:9 4K ~3840x2160"
    assert fit(build_target(None, "1:1", "4K"), KIE) == (None, "4K not offered at 1:1 (only 1K, 2K)")
    _, reason = fit(build_target(None, "21:9", "1K"), KIE)
    assert reason == "aspect 21:9 not offered (offers 1:1, 16:9, 9:16, 4:3, 3:4)"
    _, reason = fit(build_target("1024x1024", None, None), KIE)
    assert reason.startswith("takes an aspect ratio and a tier, not pixels")


def test_apiframe_three_ratios_at_1k_only():
    delivery, _ = fit(build_target(None, "3:2", "1K"), APIFRAME)
    assert (delivery.width, delivery.height, delivery.exact) == (1536, 1024, True)
    delivery, _ = fit(build_target("1024x1536", None, None), APIFRAME)
    assert delivery.aspect == "2:3"
    assert fit(build_target(None, "3:2", "2K"), APIFRAME) == (None, "2K not offered at 3:2 (only 1K)")
    assert fit(build_target("2048x2048", None, None), APIFRAME) == (
        None,
        "2048x2048 not offered (1:1 comes as 1024x1024)",
    )


def test_best_size_when_smallest_valid_is_over_budget():
    rules = OPENAI.rules
    from imgroute.models import Ratio

    # 37:29 needs a 592x464 grid step; 2 steps (1184x928) is the first above the minimum area.
    assert best_size(Ratio(37, 29), 1024 * 1024, rules) == (1184, 928)


def test_kies_size_hint_names_the_tier_that_matches_the_pixels(cli):
    quotes = cli("quote", "x", "--size", "3840x2160", "--json").json()["quotes"]
    kie = next(q for q in quotes if q["provider"] == "kie")
    assert "--aspect 16:9 --resolution 4K" in kie["reasons"][0]
    quotes = cli("quote", "x", "--size", "1280x720", "--json").json()["quotes"]
    assert "--resolution 1K" in next(q for q in quotes if q["provider"] == "kie")["reasons"][0]
