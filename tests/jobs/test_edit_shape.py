"""An edit keeps its photo's shape: the aspect is read from the first image (the simplest ratio
within one percent), at 1K unless --resolution says otherwise; an explicit --size or --aspect
wins; and the image saved has that shape."""

from __future__ import annotations

import pytest

from tests.helpers import assert_image, only, photo


def test_an_edit_of_a_wide_photo_keeps_its_shape_at_1k(cli, tmp_path):
    data = cli("quote", "make it dusk", "--image", photo(tmp_path, 1536, 1024), "--json").json()
    assert data["request"]["aspect"] == "3:2" and data["request"]["resolution"] == "1K"
    assert data["request"]["aspect_from_image"] == "1536x1024"
    by_offer = {q["offer"]: q for q in data["quotes"]}
    assert (by_offer["openai/gpt-image-2"]["output"]["width"], by_offer["openai/gpt-image-2"]["output"]["height"]) == (
        1248,
        832,
    )
    kie = by_offer["kie/gpt-image-2-text-to-image"]
    assert not kie["eligible"] and "aspect 3:2 (the first image's shape) not offered" in kie["reasons"][0]
    choice = data["choice"]["output"]
    assert choice["width"] * 2 == choice["height"] * 3


def test_a_12_megapixel_photo_is_edited_at_1k_unless_resolution_says_otherwise(cli, tmp_path):
    big = photo(tmp_path, 4000, 3000)
    data = cli("quote", "x", "--image", big, "--provider", "openai/gpt-image-2", "--json").json()
    assert (data["request"]["aspect"], data["request"]["resolution"]) == ("4:3", "1K")
    assert (data["choice"]["output"]["width"], data["choice"]["output"]["height"]) == (1152, 864)
    data = cli("quote", "x", "--image", big, "--resolution", "2K", "--provider", "openai", "--json").json()
    assert (data["request"]["aspect"], data["request"]["resolution"]) == ("4:3", "2K")


@pytest.mark.parametrize(
    ("size", "aspect"),
    [((3000, 2001), "3:2"), ((1170, 2532), "6:13"), ((1080, 1350), "4:5"), ((1000, 1001), "1:1")],
)
def test_a_photo_whose_ratio_is_not_round_takes_the_simplest_within_one_percent(cli, tmp_path, size, aspect):
    data = cli("quote", "x", "--image", photo(tmp_path, *size), "--json").json()
    assert data["request"]["aspect"] == aspect


def test_an_explicit_size_or_aspect_still_wins_over_the_photo(cli, tmp_path):
    wide = photo(tmp_path, 1536, 1024)
    assert cli("quote", "x", "--image", wide, "--aspect", "1:1", "--json").json()["request"]["aspect"] == "1:1"
    request = cli("quote", "x", "--image", wide, "--size", "1024x1024", "--json").json()["request"]
    assert request["size"] == "1024x1024" and request["aspect_from_image"] is None


def test_an_edit_through_gen_saves_an_image_of_the_photos_shape(cli, fakes, tmp_path):
    wide = photo(tmp_path, 1536, 1024)
    r = cli("edit", "make it dusk", "--image", wide, "--out", "out", "--json", *only(fakes, "openai"))
    assert r.code == 0, r.err
    assert_image(r.json()["files"][0], (1248, 832))
