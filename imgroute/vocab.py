"""imgroute's words: the values a job, a table and a report share, each written once. Imports
nothing, so any layer may use it (the pricing core, the doors, the JSON Schemas)."""

from __future__ import annotations

QUALITIES = ("low", "medium", "high")
QUALITY_RANK = {quality: rank for rank, quality in enumerate(QUALITIES)}

# The pixel budget of each resolution tier: 1K = 1024x1024 px, 2K = 2048x2048 px, 4K = 3840x2160 px.
RESOLUTION_PIXELS = {"1K": 1024 * 1024, "2K": 2048 * 2048, "4K": 3840 * 2160}
RESOLUTIONS = tuple(RESOLUTION_PIXELS)

IMAGE_FORMATS = ("png", "jpeg", "webp")  # what a job may ask for, and what imgroute reads and saves
BACKGROUNDS = ("auto", "opaque", "transparent")
MODERATIONS = ("auto", "low")
RANKS = ("price", "expected")  # by list price, or by expected cost per delivered image (history)

DEFAULT_NAME = "{slug}-{provider}-{index}"  # a saved image's file name template
