"""Writing files so that nothing is ever half-written, and the home directory stays private.

Every file imgroute writes in full (keys, sidecars, spooled answers) goes through `atomic_write`:
a temporary file beside it, flushed (and fsynced when it matters), then renamed over the name.
A reader sees the old file or the new one, never a part. Images are staged and linked into place
by images.stage/place instead, because an image must never replace an existing file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


PART_PREFIX = ".imgroute-"
_serial = itertools.count()


def temp_file(directory: Path) -> tuple[int, str]:
    """A new file of our own beside the destination: `.imgroute-PID-N.part`, created exclusively
    and 0600 (the PID lets a later run clean up what a killed one left; see images.clean_stale_parts).
    Cheaper than tempfile.mkstemp's random names, which a batch pays for twice per image."""
    while True:
        path = os.path.join(directory, f"{PART_PREFIX}{os.getpid()}-{next(_serial)}.part")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE), path
        except FileExistsError:  # left by an earlier process that had the same PID
            continue


def atomic_write(path: Path, data: bytes | str, mode: int = PRIVATE_FILE, durable: bool = True) -> Path:
    """Write `data` to `path` in one step. `mode` is the file's permission bits (0600 unless told)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = temp_file(path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        if mode != PRIVATE_FILE:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def process_alive(pid: int) -> bool:
    """Whether a process of this machine still runs (one that left a temporary file, or holds a claim)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: alive
        return True
    return True


def private_dir(path: Path) -> Path:
    """A directory only its owner can read (the home, the spool), made if missing, and so is each
    folder made on the way to it (`mkdir -p` would make those with the umask's mode: a first
    `imgroute serve` left ~/.imgroute 0755). mkdir's mode is filtered by the umask, so it is set
    again once made."""
    if path.is_dir():
        return path
    missing = [path, *(parent for parent in path.parents if not parent.exists())]
    for folder in reversed([p for p in missing if not p.is_dir()]):
        with contextlib.suppress(FileExistsError):  # (another process made it meanwhile)
            folder.mkdir(mode=PRIVATE_DIR)
            os.chmod(folder, PRIVATE_DIR)
    return path


def wider_than_private(path: Path) -> int | None:
    """The mode of a directory others may read or enter, else None (also when it is missing)."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return None
    return mode if mode & 0o077 else None


def private_file(path: Path) -> Path:
    """An empty file only its owner can read, unless it exists already (SQLite then creates its
    -wal and -shm files with the same mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    return path
