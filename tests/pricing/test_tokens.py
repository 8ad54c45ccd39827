import pytest

from imgroute.pricing.tokens import output_tokens, prompt_tokens


@pytest.mark.parametrize(
    ("width", "height", "quality", "expected"),
    [
        # OpenAI's published 1024x1024 points and the forum's calculator values.
        (1024, 1024, "low", 196),
        (1024, 1024, "medium", 1756),
        (1024, 1024, "high", 7024),
        (1536, 1024, "low", 158),
        (1536, 1024, "medium", 1372),
        (1536, 1024, "high", 5488),
        (1024, 1536, "high", 5488),
        (1792, 1024, "high", 5063),
        (3584, 2048, "high", 12329),
        # providers/openai.md reference table
        (1024, 768, "high", 4815),
        (1536, 864, "medium", 1078),
        (1920, 1088, "high", 5300),
        (2048, 2048, "high", 14272),
        (2560, 1440, "high", 7370),
        (2880, 2880, "high", 23719),
        (3840, 2160, "low", 371),
        (3840, 2160, "high", 13342),
        (3840, 1280, "high", 5311),
    ],
)
def test_output_tokens_match_published_points(width, height, quality, expected):
    assert output_tokens(width, height, quality) == expected


def test_prompt_tokens_estimate_is_chars_over_four_plus_overhead():
    assert prompt_tokens("a lighthouse") == 9  # 12 chars -> 3 tokens + 6
    assert prompt_tokens("x" * 401) == 107
