"""Where a job's images go: spooled answers, downloads, checks, names, sidecars.

Nothing here decides a job's fate: `Outputs.save` turns one recorded result into a file in place
(or an OutputError saying why it could not), and the job records it in the ledger.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from imgroute.errors import NotAnImage, OutputError, TransportFailure
from imgroute.files import atomic_write, private_dir
from imgroute.home import config
from imgroute.models import JobSpec
from imgroute.money import usd_json
from imgroute.net import images
from imgroute.net.http import Http

# A nominal size (Kie publishes none) is accepted when the aspect ratio is within this share.
NOMINAL_RATIO_TOLERANCE = 0.02


class SavedImage(NamedTuple):
    path: Path
    sha256: str
    format: str
    width: int
    height: int
    bytes: int
    verified: bool


class ImageShape(NamedTuple):
    """What the images of one attempt must be, and what names and sidecars say about them."""

    prompt: str
    provider: str
    model: str
    quality: str | None
    format: str
    width: int
    height: int
    exact: bool  # False: the provider publishes no pixel size, so only the aspect ratio is checked
    per_image: Decimal | None

    @classmethod
    def of(cls, spec: JobSpec, provider: str, estimate: Decimal | None) -> ImageShape:
        per_image = estimate / spec.n if estimate is not None and spec.n else None
        return cls(
            spec.prompt,
            provider,
            spec.model,
            spec.quality,
            spec.output_format,
            spec.width,
            spec.height,
            spec.exact_size,
            per_image,
        )

    def problem(self, info) -> str | None:
        """How a saved image differs from what was asked (None: it matches)."""
        if info.format != self.format:
            return f"is {info.format}, not the {self.format} requested"
        if self.exact and (info.width, info.height) != (self.width, self.height):
            return f"is {info.width}x{info.height}, not the {self.width}x{self.height} requested"
        if not self.exact:
            wanted, got = self.width / self.height, info.width / info.height
            if abs(got - wanted) / wanted > NOMINAL_RATIO_TOLERANCE:
                return f"is {info.width}x{info.height}, not the aspect ratio requested"
        return None


class Outputs:
    """One job's output directory and file names, and the spool for answers that carry bytes."""

    def __init__(self, out_dir: Path, name_template: str, spool_dir: Path, http: Http, resuming: bool = False):
        self.out_dir = out_dir
        self.name_template = name_template
        self.spool_dir = spool_dir
        self.http = http
        self.resuming = resuming  # an identical file already at the intended name is ours
        self.claimed: set[Path] = set()  # files recorded for this job's images: never adopted by another
        self.private = config.in_home(out_dir)  # (serve's default folder): owner-only files, as the home's
        if resuming and out_dir.is_dir():
            images.clean_stale_parts(out_dir)

    def spool(self, name: str, data: bytes) -> dict:
        """Bytes a provider answered with, made durable before anything else happens to them."""
        return {"spool": str(atomic_write(private_dir(self.spool_dir) / name, data))}

    def save(self, shape: ImageShape, output: dict, index: int, job_id: str, provider_job_id: str | None) -> SavedImage:
        """Fetch (or take from the spool), check, place under a free name, and write its sidecar."""
        staged = self._stage(shape, output, index)
        values = {
            "slug": images.slug(shape.prompt),
            "provider": shape.provider,
            "model": shape.model.replace("/", "-"),
            "index": str(index),
            "job": job_id,
            "quality": shape.quality or "",
            "date": dt.date.today().isoformat(),
        }
        stem = images.render_name(self.name_template, values)

        def next_index(attempt: int) -> str:  # a name an earlier job took: the next free index, not -2
            return images.render_name(self.name_template, {**values, "index": str(index + attempt - 1)})

        stems = next_index if "{index}" in self.name_template else None
        path = images.place(staged, self.out_dir, stem, self.resuming, self.claimed, stems, self.private)
        self.claimed.add(path)
        info = staged.info
        images.write_sidecar(
            path,
            {
                "prompt": shape.prompt,
                "provider": shape.provider,
                "model": shape.model,
                "job_id": job_id,
                "provider_job_id": provider_job_id,
                "quality": shape.quality,
                "width": info.width,
                "height": info.height,
                "format": info.format,
                "sha256": staged.sha256,
                "estimated_cost_usd": usd_json(shape.per_image),
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
            self.private,
        )
        verified = shape.problem(info) is None
        return SavedImage(
            path=path,
            sha256=staged.sha256,
            format=info.format,
            width=info.width,
            height=info.height,
            bytes=staged.size,
            verified=verified,
        )

    def discard(self, output: dict) -> None:
        """Once its file is recorded, a spooled answer's bytes have served their purpose."""
        if "spool" in output:
            Path(output["spool"]).unlink(missing_ok=True)

    def _stage(self, shape: ImageShape, output: dict, index: int) -> images.Staged:
        def stage(chunks):
            return images.stage(self.out_dir, chunks, lambda info: None)

        try:
            if "spool" in output:
                spooled = Path(output["spool"])
                if not spooled.is_file():
                    raise OutputError(f"{shape.provider}: image {index} was received but its spool file is gone")
                return stage([spooled.read_bytes()])
            status, staged = self.http.download(output["url"], stage)
            if staged is None:
                raise OutputError(
                    f"{shape.provider}: result {output['url']} answered HTTP {status} (expired or missing)"
                )
            return staged
        except NotAnImage as exc:
            raise OutputError(f"{shape.provider}: image {index} is not a usable image: {exc}") from None
        except TransportFailure as exc:
            raise OutputError(f"{shape.provider}: image {index} could not be downloaded: {exc}") from None
