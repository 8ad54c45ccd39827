"""The typer app: one module per command group, each parsing flags, calling the core, rendering.

Domain errors become exit codes here, at the one boundary (`main`). Start-up matters (`quote` is run
in loops by scripts): only what every command needs is imported at the top; a command's own module
is imported only when the command line names it, and anything heavy (httpx, sqlite) only inside the
command that uses it.
"""

from __future__ import annotations

import functools
import gc
import importlib
import sys

import typer

from imgroute.errors import EXIT_INTERRUPTED, ImgrouteError, Interrupted, ReaderGone, StdoutClosed

app = typer.Typer(
    name="imgroute",
    help="Route GPT Image 2 jobs to the cheapest provider that can really deliver them.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion and --show-completion; offers complete (options.py)
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # (a docstring's line breaks are not help's: markdown joins them)
)


def _show_version(wanted: bool) -> None:
    if wanted:
        from imgroute.cli.config_view import version_text

        print(version_text())
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit.", metavar=""
    ),
    debug: bool = typer.Option(
        False,
        "-v",
        "--debug",
        help="Trace each HTTP exchange on stderr (keys and image data hidden; also IMGROUTE_DEBUG=1).",
        metavar="",
    ),
) -> None:
    from imgroute.net import debug as trace

    trace.switch(debug)  # on every run, so that an in-process run does not inherit the last one's


def _help_without_python_types() -> None:
    """typer's --help shows Python types (`--help <bool>`, `PROMPT <str>`). A flag takes no value,
    and an argument with a metavar says what to write already; neither shows a type. (The other
    options name their values themselves: options.opt and options.flag.)"""
    from typer.core import TyperArgument, TyperOption

    if getattr(TyperOption, "imgroute_plain", False):
        return
    option_type, argument_type = TyperOption.display_type_rich, TyperArgument.display_type_rich

    def option(self, ctx):
        return None if self.is_flag and self.metavar is None else option_type(self, ctx)

    def argument(self, ctx):
        return None if self.metavar is not None else argument_type(self, ctx)

    # (typer has no setting for it: its methods are replaced, once, and the class marked as done)
    TyperOption.display_type_rich, TyperArgument.display_type_rich = option, argument  # type: ignore[method-assign]
    TyperOption.imgroute_plain = True  # type: ignore[attr-defined]


# Command -> the module that registers it. typer builds every registered command on each run, and
# `quote` should not pay for the others: only the module the command line names is imported (all of
# them for --help, no command, or a typo, so that help and suggestions are whole).
COMMAND_MODULES = {
    "quote": "imgroute.cli.quote",
    "providers": "imgroute.cli.quote",
    "pricing": "imgroute.cli.quote",
    "gen": "imgroute.cli.gen",
    "edit": "imgroute.cli.gen",
    "keys": "imgroute.cli.keys",
    "jobs": "imgroute.cli.jobs",
    "budget": "imgroute.cli.money",
    "spend": "imgroute.cli.money",
    "batch": "imgroute.cli.batch",
    "serve": "imgroute.cli.serve",
    "advise": "imgroute.cli.advise",
    "plans": "imgroute.cli.plans",
    "schema": "imgroute.cli.schema",
    "config": "imgroute.cli.config",
    "ledger": "imgroute.cli.ledger",
    "mcp": "imgroute.cli.mcp",
}


def register_commands(argv: list[str]) -> None:
    name = next((arg for arg in argv if not arg.startswith("-")), None)
    if "--help" in argv or "-h" in argv:  # (only help reads how options are shown)
        _help_without_python_types()
    modules = [COMMAND_MODULES[name]] if name in COMMAND_MODULES else sorted(set(COMMAND_MODULES.values()))
    for module in modules:
        importlib.import_module(module)


def main(argv: list[str] | None = None) -> None:
    """Run the app; every way it can end becomes one stderr line and the contract's exit code.

    typer runs outside its standalone mode, so that its usage errors (exit 2), a Ctrl-C at a prompt
    (exit 130) and domain errors all end here, in imgroute's one-line form, not in a boxed panel."""
    from typer._click import exceptions as click_errors

    from imgroute import signals

    signals.install()
    register_commands(sys.argv[1:] if argv is None else argv)
    guard_commands(app)
    _warn_if_home_is_open()
    try:
        code = app(args=argv, prog_name="imgroute", standalone_mode=False)
    except Interrupted as exc:  # Ctrl-C or SIGTERM: the same stop, told apart by the exit code
        fail(*exc.worded("cli"), signals.exit_code())
    except StdoutClosed as exc:  # what was paid for is saved; the message goes where it can be read
        signals.discard_stdout()
        fail(*exc.worded("cli"), exc.exit_code)
    except ImgrouteError as exc:
        fail(*exc.worded("cli"), exc.exit_code)
    except ReaderGone:  # a reader such as `head` went away: quietly, as Unix tools end
        signals.discard_stdout()
        sys.exit(signals.EXIT_STDOUT_CLOSED)
    except click_errors.NoArgsIsHelpError as exc:
        sys.stdout.write(exc.ctx.get_help() + "\n")
        sys.exit(exc.exit_code)
    except click_errors.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "imgroute"
        fail(exc.format_message().rstrip("."), f"see: {command} --help", exc.exit_code)
    except click_errors.ClickException as exc:
        fail(exc.format_message(), None, exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):  # Abort: Ctrl-C at a prompt
        fail(signals.stop_word(), None, signals.exit_code())
    if code == EXIT_INTERRUPTED:
        fail(signals.stop_word(), None, signals.exit_code())
    try:
        sys.stdout.flush()  # a closed stdout is found here, not in the interpreter's exit
    except BrokenPipeError:
        signals.discard_stdout()
        sys.exit(signals.EXIT_STDOUT_CLOSED)
    sys.exit(code if isinstance(code, int) else 0)


def guard_commands(typer_app: typer.Typer) -> None:
    """Every command and group callback of the app, with a broken pipe raised as ReaderGone."""
    infos = [*typer_app.registered_commands, typer_app.registered_callback]
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:  # (add_typer always sets it)
            guard_commands(group.typer_instance)
    for info in infos:
        if info is not None and info.callback is not None and not hasattr(info.callback, "reader_guarded"):
            info.callback = _guarded(info.callback)


def _guarded(callback):
    @functools.wraps(callback)  # (typer reads the parameters through __wrapped__)
    def run(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except BrokenPipeError as exc:
            raise ReaderGone() from exc

    run.reader_guarded = True  # type: ignore[attr-defined]  # (a mark on the function: guarded once)
    return run


def _warn_if_home_is_open() -> None:
    from imgroute.home.config import home_warning

    warning = home_warning()
    if warning:
        sys.stderr.write(warning + "\n")


def entry() -> None:
    """The `imgroute` program: `main`, then a quicker exit. Python ends by collecting garbage over
    every object still alive (typer, rich, pydantic, the pricing table: most of a quote's heap),
    which cost a `quote` about a sixth of its time; frozen objects are skipped, and the operating
    system takes the process's memory back whole. (Nothing of imgroute's waits on a collection at
    exit: its files are written, fsynced and closed as they are made, and every ledger commit is
    durable once made.)"""
    try:
        main()
    finally:
        gc.freeze()


MESSAGE_LIMIT = 2000  # one line, however much a provider or a file said


def fail(message: str, hint: str | None, code: int) -> None:
    text = f"error: {message}"
    if hint:
        text += f"; {hint}"
    text = " ".join(text.split())  # one line, always
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 3] + "..."
    sys.stderr.write(text + "\n")
    sys.exit(code)
