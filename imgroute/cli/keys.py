"""`imgroute keys`: set, list (names and sources, never values), remove, path, check."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from imgroute.cli.app import app
from imgroute.cli.options import JsonOpt, complete_providers, flag, opt

keys_app = typer.Typer(help="API keys: set, list (names and sources only), remove, check (free).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _registry():
    """The providers whose keys these commands handle: the built-in ones, and the relays of the
    home's pricing file (their keys are keys too)."""
    from imgroute.home import config
    from imgroute.providers.registry import BUILT_IN

    if config.user_pricing_file() is None:
        return BUILT_IN
    from imgroute.session import load_pricing

    return load_pricing(None).registry


@keys_app.command("set")
def keys_set(
    name: Annotated[
        str,
        typer.Argument(
            help="Provider id (fal) or its variable (FAL_KEY).", metavar="NAME", autocompletion=complete_providers
        ),
    ],
    value: Annotated[
        str | None, opt("--value", help="The key; prompted for (hidden) when omitted.", metavar="KEY")
    ] = None,
) -> None:
    """Store a key in the keys file (mode 0600)."""
    from imgroute.home import keys as key_store

    registry = _registry()
    provider = key_store.provider_for(name, registry)
    if value is None:
        if sys.stdin is None or not sys.stdin.isatty():
            value = sys.stdin.readline() if sys.stdin else ""
        else:
            import getpass

            value = getpass.getpass(f"{provider} key (hidden): ")
    key_store.set_key(provider, value)
    sys.stdout.write(f"stored the {provider} key in {key_store.keys_path()}\n")
    env = key_store.set_in_environment(provider, registry)
    if env:
        sys.stderr.write(f"warning: ${env} is set here and wins over the stored key; unset it to use the stored one\n")


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False) -> None:
    """Which keys are set and where each comes from (never the values)."""
    from imgroute.home import keys as key_store
    from imgroute.output.text.console import print_json

    rows = key_store.list_keys(_registry())
    if as_json:
        print_json([row._asdict() for row in rows])
        return
    for row in rows:
        where = {"env": f"from ${row.env}", "file": f"from {key_store.keys_path()}", "missing": "not set"}[row.source]
        sys.stdout.write(f"{row.provider:<9} {row.env:<17} {where}\n")


@keys_app.command("remove")
def keys_remove(
    name: Annotated[
        str, typer.Argument(help="Provider id or its variable.", metavar="NAME", autocompletion=complete_providers)
    ],
) -> None:
    """Remove a key from the keys file (environment variables are yours to unset)."""
    from imgroute.home import keys as key_store

    registry = _registry()
    provider = key_store.provider_for(name, registry)
    if key_store.remove_key(provider):
        sys.stdout.write(f"removed the {provider} key from {key_store.keys_path()}\n")
    else:
        sys.stdout.write(f"no {provider} key in {key_store.keys_path()}\n")


@keys_app.command("path")
def keys_path() -> None:
    """Where the keys file lives."""
    from imgroute.home import keys as key_store

    sys.stdout.write(f"{key_store.keys_path()}\n")


@keys_app.command("check")
def keys_check(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Only this provider (id or variable).",
            show_default=False,
            metavar="PROVIDER",
            autocompletion=complete_providers,
        ),
    ] = None,
    update: Annotated[
        bool, flag("--update", help="Set a prepaid plan to the balance the provider reports (keeps its expiry).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check each key present with a call its provider documents as free (nothing is generated or
    paid): valid, refused or unknown, and the balance where the answer has one, beside the credits
    imgroute tracks. Exit 0 when every checked key is valid, 3 when one is refused, 5 when a
    provider could not be reached."""
    from imgroute.errors import ConfigError
    from imgroute.home import config, key_check
    from imgroute.home import credits as prepaid
    from imgroute.home import keys as key_store
    from imgroute.net.http import Http, build_client
    from imgroute.output.text.console import print_json
    from imgroute.session import Keys

    registry = _registry()
    rows = [row for row in key_store.list_keys(registry) if row.source != "missing"]
    if name is not None:
        provider = key_store.provider_for(name, registry)
        rows = [row for row in rows if row.provider == provider]
        if not rows:
            env = next(r.env for r in key_store.list_keys(registry) if r.provider == provider)
            raise ConfigError(f"no {provider} key is set (${env} or the keys file)", f"imgroute keys set {provider}")
    if not rows:
        raise ConfigError("no provider keys are set, so there is nothing to check", "imgroute keys set PROVIDER")
    keys = Keys(registry)  # (IMGROUTE_TIME_SCALE is for the local fakes only, as at every door that sends)
    home = config.home()
    configured = config.load_settings(registry=registry).credits
    if configured:
        prepaid.sync_config(home, configured)
    with build_client(secrets=keys.every_value) as client:
        results = key_check.check(rows, keys, registry, Http(client), prepaid.read(home), configured)
    ask = not as_json and not update and _at_a_terminal()
    plans: dict[str, str | None] = {}
    for checked in results:
        plans[checked.provider] = None
        if not checked.differs:
            continue
        if checked.in_config:
            plans[checked.provider] = "config"
        elif update:
            key_check.update_plan(home, checked)
            plans[checked.provider] = "updated"
        else:
            plans[checked.provider] = "ask" if ask else "offered"
    if as_json:
        print_json([key_check.as_json(checked, plans[checked.provider]) for checked in results])
    else:
        for checked in results:
            sys.stdout.write(_line(checked, plans[checked.provider], key_store.keys_path()) + "\n")
    for checked in results:  # at a terminal, after the results: one question per plan that differs
        if plans[checked.provider] == "ask" and _confirm(checked):
            updated = key_check.update_plan(home, checked)
            sys.stdout.write(f"{checked.provider}: {updated.left:,f} prepaid credits, expiring {updated.expires}\n")
    code = key_check.exit_code(results)
    if code:
        raise typer.Exit(code)


def _at_a_terminal() -> bool:
    """A person can answer a question (without one, a plan changes only with --update)."""
    return sys.stdin is not None and sys.stdin.isatty() and sys.stdout.isatty()


def _confirm(checked) -> bool:
    return typer.confirm(
        f"set the {checked.provider} plan to {checked.balance:,f} credits left "
        f"(expiry kept: {checked.tracked.expires})?",
        default=False,
    )


def _line(checked, plan: str | None, keys_file) -> str:
    """One provider's result: never the key, only where it comes from."""
    where = f"${checked.env}" if checked.source == "env" else f"the {checked.provider} key in {keys_file}"
    text = f"{checked.provider:<9} {checked.state:<8} {checked.route or '-'}"
    if checked.state == "refused":
        text += f": {where} was refused"
    if checked.detail:
        text += f" ({checked.detail})" if checked.state == "refused" else f": {checked.detail}"
    if not checked.reached:
        text += "; the provider could not be reached"
    if checked.balance is not None:
        shown = f"{checked.balance:,f}" if checked.unit == "credits" else f"{checked.balance:,.2f}"
        text += f"; balance {shown} {checked.unit}"
    if checked.tracked is not None and checked.unit == "credits":
        tracked = checked.tracked
        text += f"; imgroute tracks {tracked.left:,f} of {tracked.bought:,f} left, expiring {tracked.expires}"
        text += {
            "updated": f"; plan updated to {checked.balance:,f}, expiring {tracked.expires}",
            "offered": f"; to set the plan to it: imgroute keys check {checked.provider} --update",
            "config": "; the plan is set in config.yaml (credits:): change it there",
        }.get(plan or "", "")
    return text
