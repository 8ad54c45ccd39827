"""Every journaled value comes back from its JSON as the very same value."""

from __future__ import annotations

import json
from decimal import Decimal
from types import MappingProxyType

import pytest
from PIL import Image

from imgroute.models import Constraints, InputImage, JobSpec, Request, Target
from imgroute.request import build_inputs, build_target
from tests.fakes.server import make_image

TARGETS = [
    (None, None, None),  # neither: 1:1 at 1K
    ("1536x1024", None, None),
    ("1024 x 1536", None, None),
    (None, "16:9", None),
    (None, "21:9", "4K"),  # kept as written, reduced to 7:3 for matching
    (None, "1:3", "2K"),
    (None, None, "2K"),
]


def through_json(value):
    return type(value).from_json(json.loads(json.dumps(value.to_json())))


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "photo.png").write_bytes(make_image(1024, 1024, "png", seed=1))
    (tmp_path / "photo.jpg").write_bytes(make_image(1536, 1024, "jpeg", seed=2))
    (tmp_path / "photo.webp").write_bytes(make_image(640, 480, "webp", seed=3))
    Image.new("RGBA", (1024, 1024), (0, 0, 0, 0)).save(tmp_path / "mask.png")
    return tmp_path


@pytest.mark.parametrize(("size", "aspect", "resolution"), TARGETS)
def test_targets_round_trip(size, aspect, resolution):
    target = build_target(size, aspect, resolution)
    assert through_json(target) == target
    assert str(through_json(target)) == str(target)


@pytest.mark.parametrize(("size", "aspect", "resolution"), TARGETS)
@pytest.mark.parametrize(
    ("images", "mask"),
    [
        ([], None),
        (["photo.png"], None),
        (["photo.png"], "mask.png"),
        (["photo.jpg", "photo.webp", "https://example.com/a.png"], None),
        (["https://example.com/a.png"], "https://example.com/mask.png"),
    ],
)
def test_requests_round_trip_with_local_files_urls_and_masks(inputs, size, aspect, resolution, images, mask):
    sources = [s if s.startswith("https://") else str(inputs / s) for s in images]
    mask_source = mask if mask is None or mask.startswith("https://") else str(inputs / mask)
    files, checked_mask = build_inputs(sources, mask_source)
    request = Request(
        prompt="a lighthouse\nat dusk, ünïcode ✓",
        quality="high",
        target=build_target(size, aspect, resolution),
        n=3,
        images=files,
        mask=checked_mask,
        output_format="webp",
    )
    again = through_json(request)
    assert again == request
    assert all(isinstance(image, InputImage) for image in again.images)
    if files and not files[0].is_url:
        assert again.images[0].width == files[0].width and again.images[0].format == files[0].format


def test_an_old_ledgers_image_sources_come_back_as_input_images():
    stored = {"prompt": "p", "quality": "low", "size": None, "aspect": "1:1", "resolution": "1K", "n": 1}
    request = Request.from_json({**stored, "images": ["/tmp/a.png", "https://x/b.png"], "mask": "/tmp/m.png"})
    assert request.images == (InputImage("/tmp/a.png", False), InputImage("https://x/b.png", True))
    assert request.mask == InputImage("/tmp/m.png", False) and request.target == Target.from_json(stored)


@pytest.mark.parametrize(
    "constraints",
    [
        Constraints(),
        Constraints(frozenset({"kie", "fal"}), frozenset({"openai"}), Decimal("0.25"), MappingProxyType({})),
        Constraints(plans=MappingProxyType({"apiframe": "growth"}), max_cost=Decimal("0")),
    ],
)
def test_constraints_round_trip(constraints):
    assert through_json(constraints) == constraints


@pytest.mark.parametrize(
    "spec",
    [
        JobSpec("p", "gpt-image-2", "low", 1024, 1024, None, None, 2, "png", "job-1-0"),
        JobSpec("p", "gpt-image-2-text-to-image", None, 1280, 720, "16:9", "1K", 1, "png", "r", exact_size=False),
        JobSpec("p", "m", "high", 1024, 1024, "1:1", "1K", 1, "jpeg", "r", ("/a.png", "https://x/b.png"), "/m.png"),
    ],
)
def test_job_specs_round_trip(spec):
    assert through_json(spec) == spec
