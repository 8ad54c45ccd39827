"""Policy numbers in one place: anything a reasonable person might want to tune."""

from __future__ import annotations

# `imgroute pricing` warns about rows observed longer ago than this (config: pricing_max_age_days).
DEFAULT_PRICING_MAX_AGE_DAYS = 180
