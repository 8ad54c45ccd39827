"""Image bytes: what they really are (by header, never by extension), and saving them safely.

Saving is atomic and never overwrites: bytes go to a hidden temporary file in the output
directory, are verified, then hard-linked to a free final name (link fails if the name exists, so
two processes cannot clobber each other) and the temporary file is removed.
"""

from __future__ import annotations

import json
import os
import re
import struct
import unicodedata
from collections.abc import Callable, Collection
from pathlib import Path
from typing import NamedTuple

from imgroute.errors import NotAnImage
from imgroute.files import PART_PREFIX, PRIVATE_FILE, atomic_write, process_alive, temp_file

FORMATS = ("png", "jpeg", "webp")
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
HEADER_BYTES = 64 * 1024  # enough for any PNG/WebP header and a JPEG SOF after typical metadata
SLUG_MAX = 48


class ImageInfo(NamedTuple):
    format: str
    width: int
    height: int
    has_alpha: bool | None = None  # known for PNG and WebP


def sniff(head: bytes) -> ImageInfo:
    """Format and pixel size from the first bytes of a file. NotAnImage for anything else, a header
    cut short included, or one that claims no pixels."""
    try:
        info = _sniff(head)
    except (struct.error, IndexError):
        raise NotAnImage("its header is cut short") from None
    if info.width < 1 or info.height < 1:
        raise NotAnImage(f"its header claims {info.width}x{info.height} pixels")
    return info


def _sniff(head: bytes) -> ImageInfo:
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) < 26:
        raise NotAnImage("its header is cut short")
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        color_type = head[25]
        return ImageInfo(format="png", width=width, height=height, has_alpha=color_type in (4, 6))
    if head[:3] == b"\xff\xd8\xff":
        return _sniff_jpeg(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _sniff_webp(head)
    raise NotAnImage("not a PNG, JPEG or WebP image")


def _sniff_jpeg(head: bytes) -> ImageInfo:
    i = 2
    while i + 9 < len(head):
        if head[i] != 0xFF:
            raise NotAnImage("corrupt JPEG header")
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", head[i + 2 : i + 4])
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[i + 5 : i + 9])
            return ImageInfo(format="jpeg", width=width, height=height, has_alpha=False)
        i += 2 + length
    raise NotAnImage("JPEG frame size not found in its header")


def _sniff_webp(head: bytes) -> ImageInfo:
    chunk = head[12:16]
    if chunk == b"VP8X":
        flags = head[20]
        width = 1 + int.from_bytes(head[24:27], "little")
        height = 1 + int.from_bytes(head[27:30], "little")
        return ImageInfo(format="webp", width=width, height=height, has_alpha=bool(flags & 0x10))
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        width = (bits & 0x3FFF) + 1
        height = ((bits >> 14) & 0x3FFF) + 1
        return ImageInfo(format="webp", width=width, height=height, has_alpha=bool((bits >> 28) & 1))
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return ImageInfo(format="webp", width=width & 0x3FFF, height=height & 0x3FFF, has_alpha=False)
    raise NotAnImage("unknown WebP chunk")


TAIL_BYTES = 16


def check_complete(info: ImageInfo, head: bytes, tail: bytes, size: int) -> None:
    """Reject a file cut short: a header can parse fine while the end of the image is missing."""
    if info.format == "png" and not tail.endswith(b"IEND\xaeB`\x82"):
        raise NotAnImage("PNG is truncated (no IEND chunk at the end)")
    if info.format == "jpeg" and b"\xff\xd9" not in tail:
        raise NotAnImage("JPEG is truncated (no end-of-image marker)")
    if info.format == "webp" and int.from_bytes(head[4:8], "little") + 8 != size:
        raise NotAnImage("WebP is truncated (its RIFF size does not match the file)")


# -- names ------------------------------------------------------------------------------------


def slug(text: str, limit: int = SLUG_MAX) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = re.sub(r"[^a-z0-9]+", "-", plain).strip("-")
    cut = words[:limit].rstrip("-")
    return cut or "image"


NAME_FIELDS = ("slug", "provider", "model", "index", "job", "quality", "date")


def render_name(template: str, values: dict[str, str]) -> str:
    try:
        name = template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{template!r}: {exc} (fields: {', '.join(NAME_FIELDS)})") from None
    name = name.replace(os.sep, "-").strip(". ")
    if not name:
        raise ValueError(f"{template!r} gives an empty file name")
    return name


# -- saving -----------------------------------------------------------------------------------


def clean_stale_parts(out_dir: Path) -> int:
    """Remove temporary files left by imgroute processes that no longer run (killed mid-write)."""
    removed = 0
    for part in out_dir.glob(f"{PART_PREFIX}*.part"):
        pid = part.name[len(PART_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and process_alive(int(pid)):
            continue
        part.unlink(missing_ok=True)
        removed += 1
    return removed


class Staged(NamedTuple):
    """Bytes written to a temporary file in the output directory, not yet in place."""

    path: Path
    info: ImageInfo
    size: int
    sha256: str


def stage(out_dir: Path, chunks, verify) -> Staged:
    """Write chunks to a temp file next to the destination, then `verify(info)` before keeping it.

    `verify` raises to reject the bytes; the temp file is removed on any failure.
    """
    import hashlib

    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(out_dir)
    path = Path(tmp)
    digest = hashlib.sha256()
    size = 0
    head = b""
    tail = b""
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if len(head) < HEADER_BYTES:
                    head += chunk[: HEADER_BYTES - len(head)]
                tail = (tail + chunk)[-TAIL_BYTES:]
            fh.flush()
            os.fsync(fh.fileno())
        info = sniff(head)
        check_complete(info, head, tail, size)
        verify(info)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Staged(path=path, info=info, size=size, sha256=digest.hexdigest())


def _read_umask() -> int:
    """The process umask. Reading it means setting it for a moment, which would let files made by
    other threads meanwhile be world-writable: so it is read once, when this module is imported
    (before a batch starts its threads)."""
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


_FILE_MODE = 0o666 & ~_read_umask()


def _file_mode() -> int:
    """What a plainly created file gets under the user's umask (temporary files are made 0600)."""
    return _FILE_MODE


def place(
    staged: Staged,
    out_dir: Path,
    stem: str,
    adopt_identical: bool = False,
    taken: Collection[Path] = (),
    stems: Callable[[int], str] | None = None,
    private: bool = False,
) -> Path:
    """Give a staged file its final name without ever overwriting: stem.ext, stem-2.ext, ... (or,
    with `stems`, the names it gives for attempts 1, 2, ...: a template's next free index).

    With `adopt_identical` (resuming an interrupted save), a file already at one of those names
    with the very same bytes is taken as this image, instead of writing a second copy, unless it
    is in `taken`: already another image of the same job (a provider may send two alike).
    `private`: the folder is imgroute's home (served images): the file stays owner-only.
    """
    ext = EXTENSIONS[staged.info.format]
    if not private:  # (staged 0600: a file in imgroute's home stays owner-only)
        os.chmod(staged.path, _file_mode())
    for attempt in range(1, 10_000):
        if stems is not None:
            name = f"{stems(attempt)}.{ext}"
        else:
            name = f"{stem}.{ext}" if attempt == 1 else f"{stem}-{attempt}.{ext}"
        final = out_dir / name
        try:
            os.link(staged.path, final)
        except FileExistsError:
            if adopt_identical and final not in taken and _sha256(final) == staged.sha256:
                staged.path.unlink(missing_ok=True)
                return final
            continue
        staged.path.unlink(missing_ok=True)
        return final
    raise FileExistsError(f"no free file name for {stem}.{ext} in {out_dir}")


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sidecar(image_path: Path, record: dict, private: bool = False) -> Path:
    """The job's facts next to the image, atomically: image.png -> image.png.json."""
    sidecar = image_path.with_name(image_path.name + ".json")
    mode = PRIVATE_FILE if private else _file_mode()
    return atomic_write(sidecar, json.dumps(record, indent=2) + "\n", mode=mode, durable=False)
