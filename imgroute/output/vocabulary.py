"""The words the `--json` schemas are written in: JSON Schema (draft 2020-12) as plain dicts.

Each builder in imgroute.output.report has its schema written beside it in these words, and `imgroute
schema NAME` prints it (catalog.py). Objects are closed (`additionalProperties: false`) and every
key is required unless named optional, so a key a builder emits without its schema fails
tests/output/test_schemas.py. Nothing here runs when a shape is built: the schemas are data, made once
at import (a few hundred small dicts).
"""

from __future__ import annotations

from collections.abc import Iterable

USD = "USD, rounded to 6 places"


def _with(schema: dict, description: str | None) -> dict:
    return {"description": description, **schema} if description else schema


def text(description: str | None = None, *, pattern: str | None = None) -> dict:
    schema: dict = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern
    return _with(schema, description)


def integer(description: str | None = None, *, minimum: int | None = None) -> dict:
    schema: dict = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    return _with(schema, description)


def number(description: str | None = None) -> dict:
    return _with({"type": "number"}, description)


def boolean(description: str | None = None) -> dict:
    return _with({"type": "boolean"}, description)


def usd(description: str | None = None, *, known: bool = False) -> dict:
    """A USD amount: a number rounded to 6 places; null when not known, unless `known`."""
    said = f"{description} ({USD})" if description else USD
    if known:
        return {"description": said, "type": "number"}
    return {"description": f"{said}; null when not known", "type": ["number", "null"]}


def enum(values: Iterable, description: str | None = None) -> dict:
    """One of these strings (a StrEnum, or any strings)."""
    return _with({"type": "string", "enum": [str(value) for value in values]}, description)


def states(meanings: dict[str, str], description: str | None = None) -> dict:
    """One of these values, each listed with its meaning (if it needs one) in the description."""
    said = "; ".join(f"{value} ({meaning})" if meaning else value for value, meaning in meanings.items())
    return {"description": f"{description}: {said}" if description else said, "type": "string", "enum": list(meanings)}


def array_of(items: dict, description: str | None = None) -> dict:
    return _with({"type": "array", "items": items}, description)


def map_of(values: dict, description: str | None = None) -> dict:
    """An object whose keys are names (not fixed), each with a value of this schema."""
    return _with({"type": "object", "additionalProperties": values}, description)


def any_json(description: str) -> dict:
    """Any JSON value (what a provider's API takes, shown as it would be sent)."""
    return {"description": description}


def nullable(schema: dict) -> dict:
    """The same schema, or null (a copy: the schemas are shared)."""
    out = dict(schema)
    kind = out.get("type")
    if kind is None:
        return {"anyOf": [schema, {"type": "null"}]}
    kinds = kind if isinstance(kind, list) else [kind]
    out["type"] = [*kinds, "null"] if "null" not in kinds else kinds
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def one_of(*choices: dict, description: str | None = None) -> dict:
    return _with({"oneOf": list(choices)}, description)


def obj(properties: dict[str, dict], *, optional: Iterable[str] = (), description: str | None = None) -> dict:
    """A closed object: these keys and no others, all required but the optional ones."""
    optional = tuple(optional)
    unknown = [key for key in optional if key not in properties]
    assert not unknown, f"optional keys not among the properties: {unknown}"
    return _with(
        {
            "type": "object",
            "properties": dict(properties),
            "required": [key for key in properties if key not in optional],
            "additionalProperties": False,
        },
        description,
    )


def extended(
    base: dict,
    properties: dict[str, dict],
    *,
    optional: Iterable[str] = (),
    drop: Iterable[str] = (),
    description: str | None = None,
) -> dict:
    """`base`'s object with more keys (and without the `drop` ones). Closed objects do not combine
    with allOf, so their keys are listed again, in one object."""
    drop = set(drop)
    kept = {key: value for key, value in base["properties"].items() if key not in drop}
    required = set(base["required"])
    inherited = tuple(key for key in kept if key not in required)
    return obj(
        {**kept, **properties}, optional=(*inherited, *optional), description=description or base.get("description")
    )


# -- fields many shapes share ---------------------------------------------------------------------

PROVIDER = text("Provider id: openai, fal, piapi, kie, apiframe, replicate, or a relay you declared")
MODEL = text("The model as the provider names it")
OFFER_ID = text("Offer id: provider/model")
PLAN = text("The provider's plan it is priced at (payg, standard, growth, ...)")
STRINGS = array_of(text())
CAVEATS = array_of(text(), "What is worth knowing about the chosen offers before paying")
DAY = text("A date, YYYY-MM-DD", pattern=r"^\d{4}-\d{2}-\d{2}$")
LOCAL_TIME = text("Local time, YYYY-MM-DD HH:MM:SS", pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
