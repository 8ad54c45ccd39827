"""Token counts for token-metered offers (OpenAI direct, fal, PiAPI gpt-image-2).

The output-token formula is not documented by OpenAI. It was extracted from OpenAI's calculator
(https://community.openai.com/t/gpt-image-2-output-pricing-calculator-online-and-in-your-code/1382699)
and reproduces OpenAI's published examples, the calculator values quoted on the forum and fal's
whole price table. Integer arithmetic keeps it exact.
"""

from __future__ import annotations

# Per-quality factor q of the formula.
QUALITY_FACTOR = {"low": 16, "medium": 48, "high": 96}

# Prompt text: about one token per four characters of English, plus a fixed overhead that a
# forum measurement put at ~6 tokens on /images/generations. An estimate; `usage` is the truth.
CHARS_PER_TOKEN = 4
PROMPT_OVERHEAD_TOKENS = 6


def output_tokens(width: int, height: int, quality: str) -> int:
    """Output image tokens for one image: ceil(q*k*(W*H + 2e6) / 4e6), k = round_half_up(q*S/L)."""
    q = QUALITY_FACTOR[quality]
    long_edge, short_edge = max(width, height), min(width, height)
    k = (2 * q * short_edge + long_edge) // (2 * long_edge)  # floor(q*S/L + 1/2)
    numerator = q * k * (width * height + 2_000_000)
    return -(-numerator // 4_000_000)


def prompt_tokens(prompt: str) -> int:
    return -(-len(prompt) // CHARS_PER_TOKEN) + PROMPT_OVERHEAD_TOKENS


# Input images (edits): OpenAI does not document how they are counted. Community measurements of
# gpt-image-2 edits: each image is billed separately, in 32 px patches with a budget of about 1,536,
# small images first scaled up toward a 1024 px long side, the billed aspect capped at 3:1. One
# token per patch is assumed here; `usage.input_tokens_details.image_tokens` is the truth.
PATCH_PX = 32
PATCH_BUDGET = 1536
SMALL_IMAGE_LONG_EDGE = 1024
UNKNOWN_INPUT_SIZE = (1024, 1024)  # a URL input is not fetched to be priced


def input_image_tokens(width: int | None, height: int | None) -> int:
    if not width or not height:
        width, height = UNKNOWN_INPUT_SIZE
    long_edge: float  # scaled below, so no longer whole pixels
    short_edge: float
    long_edge, short_edge = max(width, height), min(width, height)
    if long_edge < SMALL_IMAGE_LONG_EDGE:
        scale = SMALL_IMAGE_LONG_EDGE / long_edge
        long_edge, short_edge = SMALL_IMAGE_LONG_EDGE, short_edge * scale
    short_edge = max(short_edge, long_edge / 3)
    patches = _patches(long_edge, short_edge)
    if patches > PATCH_BUDGET:
        shrink = (PATCH_BUDGET / patches) ** 0.5
        patches = min(PATCH_BUDGET, _patches(long_edge * shrink, short_edge * shrink))
    return patches


def _patches(a: float, b: float) -> int:
    return -(-int(a) // PATCH_PX) * -(-int(b) // PATCH_PX)
