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
