"""Every `--json` shape imgroute prints, in one place (the contract in design.md section 5).

Values in, plain JSON-ready dicts out. USD amounts are numbers rounded to 6 places.
"""

from __future__ import annotations

from imgroute.models import Request


def request_json(request: Request) -> dict:
    """What was asked, as a user would write it: images and mask by their path or URL."""
    return {
        "prompt": request.prompt,
        "quality": request.quality,
        **request.target.to_json(),
        "n": request.n,
        "images": [image.source for image in request.images],
        "mask": request.mask.source if request.mask else None,
        "format": request.output_format,
    }
