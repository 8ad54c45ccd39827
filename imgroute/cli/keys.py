"""`imgroute keys`: set, list (names and sources, never values), remove, path."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from imgroute.cli import app
from imgroute.cli.options import JsonOpt, opt

keys_app = typer.Typer(help="API keys: set, list (names and sources only), remove.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _store():
    """The key store, with the relays of the home pricing file known (their keys are keys too)."""
    from imgroute import config
    from imgroute import keys as key_store

    if config.user_pricing_file() is not None:
        from imgroute.session import load_pricing

        load_pricing(None)
    return key_store


@keys_app.command("set")
def keys_set(
    name: Annotated[str, typer.Argument(help="Provider id (fal) or its variable (FAL_KEY).")],
    value: Annotated[str | None, opt("--value", help="The key; prompted for (hidden) when omitted.")] = None,
) -> None:
    """Store a key in the keys file (mode 0600)."""
    key_store = _store()
    provider = key_store.provider_for(name)
    if value is None:
        if sys.stdin is None or not sys.stdin.isatty():
            value = sys.stdin.readline() if sys.stdin else ""
        else:
            import getpass

            value = getpass.getpass(f"{provider} key (hidden): ")
    key_store.set_key(provider, value)
    sys.stdout.write(f"stored the {provider} key in {key_store.keys_path()}\n")
    env = key_store.set_in_environment(provider)
    if env:
        sys.stderr.write(f"warning: ${env} is set here and wins over the stored key; unset it to use the stored one\n")


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False) -> None:
    """Which keys are set and where each comes from (never the values)."""
    from imgroute import render

    key_store = _store()
    rows = key_store.list_keys()
    if as_json:
        render.print_json([row._asdict() for row in rows])
        return
    for row in rows:
        where = {"env": f"from ${row.env}", "file": f"from {key_store.keys_path()}", "missing": "not set"}[row.source]
        sys.stdout.write(f"{row.provider:<9} {row.env:<17} {where}\n")


@keys_app.command("remove")
def keys_remove(name: Annotated[str, typer.Argument(help="Provider id or its variable.")]) -> None:
    """Remove a key from the keys file (environment variables are yours to unset)."""
    key_store = _store()
    provider = key_store.provider_for(name)
    if key_store.remove_key(provider):
        sys.stdout.write(f"removed the {provider} key from {key_store.keys_path()}\n")
    else:
        sys.stdout.write(f"no {provider} key in {key_store.keys_path()}\n")


@keys_app.command("path")
def keys_path() -> None:
    """Where the keys file lives."""
    from imgroute import keys as key_store

    sys.stdout.write(f"{key_store.keys_path()}\n")
