"""The pricing table as it was last built, kept in the home for the next command.

Parsing and checking pricing.yaml (and importing PyYAML to do it) is most of what `imgroute quote`
does after Python's own start-up, and the table stays the same until a pricing file or imgroute
itself changes. So the built table is kept, pickled, in the owner-only home under the SHA-256 of
imgroute's version and the bytes of every file it was built from: any change to any of them, an
edit in the same second included, builds it again. A cache that cannot be read or written is
simply not used; a file with an error is never cached, so its error is always reported. Only a
home that exists gets one (a quote on a fresh machine creates nothing).
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

from imgroute.pricing import table as values
from imgroute.pricing.load import bundled_path, load_table
from imgroute.pricing.table import PricingTable
from imgroute.version import __version__

CACHE_FILE = Path("cache") / "pricing-table.pickle"
LAYOUT = [value for value in vars(values).values() if isinstance(value, type) and hasattr(value, "_fields")]


def load(user_file: Path | None, home: Path) -> PricingTable:
    """load_table(user_file), from the cache when the files are the ones it was built from."""
    try:
        key = _key([bundled_path(), *([user_file] if user_file is not None else [])])
    except OSError:
        return load_table(user_file)  # it names what cannot be read, and how to fix it
    path = home / CACHE_FILE
    table = _read(path, key)
    if table is None:
        table = load_table(user_file)
        _write(home, key, table)
    return table


def _key(paths: list[Path]) -> str:
    digest = hashlib.sha256(__version__.encode())
    # The fields of the table's values, in order: a pickle from a build whose values are laid out
    # otherwise (a checkout between two releases) is built again, never read into the wrong fields.
    digest.update(repr([(cls.__name__, cls._fields) for cls in LAYOUT]).encode())
    for path in paths:
        digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _read(path: Path, key: str) -> PricingTable | None:
    try:
        with open(path, "rb") as fh:
            stored_key, table = pickle.load(fh)
    except Exception:  # missing, cut short, or from an imgroute whose classes have changed
        return None
    return table if stored_key == key and isinstance(table, PricingTable) else None


def _write(home: Path, key: str, table: PricingTable) -> None:
    from imgroute.files import atomic_write, private_dir

    if not home.is_dir():  # a quote on a fresh machine leaves no trace: no home is made for a cache
        return
    try:
        private_dir(home / CACHE_FILE.parent)
        data = pickle.dumps((key, table), protocol=pickle.HIGHEST_PROTOCOL)
        atomic_write(home / CACHE_FILE, data, durable=False)
    except OSError:  # a read-only home: the next command builds the table again
        pass
