"""A small typed reader over parsed YAML that names the file and field path in every error.

Validation errors read like `pricing.yaml: offers[kie/gpt-image-2].price.credits_per_image.4K: -16
is negative`, so a user can find and fix the field without a traceback.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from imgroute.errors import ConfigError, quoted, shown
from imgroute.pricing.table import Provenance

_MISSING = object()


class Field:
    """One value in a parsed document, with where it came from."""

    def __init__(self, value: Any, path: str, file: str, hint: str | None = None):
        self.value = value
        self.path = path
        self.file = file
        self.hint = hint

    def fail(self, problem: str, hint: str | None = None) -> ConfigError:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return ConfigError(f"{where}: {problem}", hint or self.hint)

    # -- navigation -------------------------------------------------------------------------

    def mapping(self, allowed: set[str] | None = None) -> dict[str, Field]:
        if not isinstance(self.value, dict):
            raise self.fail(f"expected a mapping, found {_kind(self.value)}")
        out = {}
        for key, value in self.value.items():
            key_text = str(key)
            if allowed is not None and key_text not in allowed:
                import difflib

                known = ", ".join(sorted(allowed))
                close = difflib.get_close_matches(key_text, sorted(allowed), n=1)
                meant = f"did you mean {close[0]}? " if close else ""
                raise self.child(key_text, value).fail(f"unknown field ({meant}known: {known})")
            out[key_text] = self.child(key_text, value)
        return out

    def child(self, key: str, value: Any) -> Field:
        path = f"{self.path}.{key}" if self.path else key
        return Field(value, path, self.file, self.hint)

    def get(self, key: str, default: Any = _MISSING) -> Field:
        if not isinstance(self.value, dict):
            raise self.fail(f"expected a mapping, found {_kind(self.value)}")
        if key not in self.value or self.value[key] is None and default is not _MISSING:
            if default is _MISSING:
                raise self.fail(f"missing field '{key}'")
            return self.child(key, default)
        return self.child(key, self.value[key])

    def items(self) -> list[Field]:
        if not isinstance(self.value, list):
            raise self.fail(f"expected a list, found {_kind(self.value)}")
        return [Field(v, f"{self.path}[{i}]", self.file, self.hint) for i, v in enumerate(self.value)]

    # -- scalars ----------------------------------------------------------------------------

    def text(self) -> str:
        if not isinstance(self.value, str) or not self.value.strip():
            raise self.fail(f"expected text, found {_kind(self.value)}")
        return self.value.strip()

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"expected true or false, found {_kind(self.value)}")
        return self.value

    def integer(self, minimum: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail(f"expected a whole number, found {_kind(self.value)}")
        if minimum is not None and self.value < minimum:
            raise self.fail(f"{shown(self.value)} is below the minimum of {minimum}")
        return self.value

    def money(self) -> Decimal:
        """A non-negative exact amount; YAML numbers are read through their text, never floats."""
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float, str)):
            raise self.fail(f"expected an amount, found {_kind(self.value)}")
        try:
            amount = Decimal(str(self.value).strip().lstrip("$"))
        except InvalidOperation:
            raise self.fail(f"{quoted(self.value)} is not a number") from None
        if not amount.is_finite():
            raise self.fail(f"{quoted(self.value)} is not a finite number")
        if amount < 0:
            raise self.fail(f"{shown(self.value)} is negative", "prices and rates must be zero or more")
        return amount

    def date(self) -> dt.date:
        if isinstance(self.value, dt.datetime):
            return self.value.date()
        if isinstance(self.value, dt.date):
            return self.value
        if isinstance(self.value, str):
            try:
                return dt.date.fromisoformat(self.value.strip())
            except ValueError:
                pass
        raise self.fail(f"{quoted(self.value)} is not a date", "write dates as YYYY-MM-DD")

    def choice(self, allowed: tuple[str, ...] | set[str]) -> str:
        value = self.text()
        if value not in allowed:
            raise self.fail(f"{quoted(value)} is not one of {', '.join(sorted(allowed))}")
        return value

    def text_list(self, allowed: tuple[str, ...] | set[str] | None = None) -> tuple[str, ...]:
        values = tuple(item.text() if allowed is None else item.choice(allowed) for item in self.items())
        if not values:
            raise self.fail("expected at least one entry")
        return values


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{value} (true/false)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"the number {quoted(value)}"
    return quoted(value) if not isinstance(value, str) else f"'{quoted(value)[1:-1]}'"


def read_yaml(path: Path, what: str = "pricing file") -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist", "check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"cannot read {what} {path}: it is a directory", "give a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {what} {path}: it is not UTF-8 text", "save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}", "check the file's permissions") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ~10x faster
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{where}: not valid YAML: {problem}", "fix the YAML syntax") from None
    except (ValueError, OverflowError) as exc:  # a well-formed value PyYAML cannot build: 2026-02-30
        raise ConfigError(
            f"{path}: a value cannot be read: {quoted(str(exc))}", "fix the value (dates as YYYY-MM-DD)"
        ) from None


# -- what every entry of pricing.yaml carries -------------------------------------------------


def provenance(node: Field) -> Provenance:
    return Provenance(source=node.get("source").text(), observed=node.get("observed").date())


def notes(node: Field) -> tuple[str, ...]:
    notes = node.get("notes", [])
    return tuple(item.text() for item in notes.items())
