"""One error, worded by each door: the core names an option once (errors.named) and the CLI says
`--max-cost`, the Python API `max_cost=`, serve `imgroute.max_cost` (with it as the 400's `param`).
And no core module writes a CLI flag into an error."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import imgroute
from imgroute.errors import UsageError, named
from imgroute.options import BY_NAME, HINTS, JOB, ROUTE, ROW_FIELDS, spelled
from tests.helpers import only

PACKAGE = Path(imgroute.__file__).parent


@pytest.mark.parametrize(
    ("options", "api", "cli_text", "field"),
    [
        ({"max_cost": "-1"}, "max_cost= '-1' is negative", "--max-cost '-1' is negative", "max_cost"),
        ({"n": 0}, "n= 0 is out of range", "--n 0 is out of range", "n"),
        ({"output_format": "gif"}, "output_format= 'gif' is not an image format", "--format 'gif'", "output_format"),
        ({"deadline": "soon"}, "deadline= 'soon' is not a duration", "--deadline 'soon'", "deadline"),
        ({"providers": ["nobody"]}, "unknown provider 'nobody' in providers=", "in --provider", "providers"),
    ],
)
def test_the_python_api_and_the_cli_each_name_the_option_their_way(cli, options, api, cli_text, field):
    with pytest.raises(UsageError) as caught:
        imgroute.quote("a lighthouse", **options)
    assert api in caught.value.message and "--" not in caught.value.message
    assert caught.value.field == field and str(caught.value) == caught.value.message
    flags = [arg for name, value in options.items() for arg in (spelled(name, "cli"), *_listed(value))]
    shown = cli("quote", "a lighthouse", *flags)
    assert shown.code == 2 and cli_text in shown.err


def _listed(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def test_an_error_said_of_a_place_keeps_its_wording_per_door():
    error = UsageError(f"{named('quality')} 'ultra' is not a tier", "use low, medium or high").about("row 3")
    assert error.worded("cli")[0] == "row 3: --quality 'ultra' is not a tier"
    assert error.message == "row 3: quality= 'ultra' is not a tier" and error.field == "quality"
    assert error.worded("serve")[0] == "row 3: quality 'ultra' is not a tier"


def test_every_option_is_spelled_by_every_door():
    for option in (*JOB, *ROUTE):
        assert spelled(option.name, "cli") == option.flag and spelled(option.name, "api") == f"{option.name}="
        assert spelled(option.name, "serve") in (option.param, f"imgroute.{option.hint}", option.name)
    assert {name for name in HINTS.values() if name} <= set(BY_NAME)
    assert {"prompt", "provider", "deadline", "image", "format"} <= set(ROW_FIELDS)


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
DOORS = ("cli/", "output/", "agents/")  # what the CLI (and imgroute mcp, a command) prints is its own to word


def test_no_core_module_writes_a_cli_flag_into_an_error():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith(DOORS):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            called = getattr(node, "func", None)
            name = getattr(called, "id", None) or getattr(called, "attr", "")
            if not isinstance(node, ast.Call) or not name.endswith(("Error", "Busy", "Interrupted", "Closed")):
                continue
            for arg in node.args[:2]:
                text = ast.unparse(arg)
                if FLAG.search(text) and "imgroute " not in text:  # (a command to run may carry its flags)
                    found.append(f"{where}:{node.lineno}: {text[:80]}")
    assert found == []


def test_the_core_reads_each_option_with_the_tables_default():
    """build_request and build_constraints take the options of JOB and ROUTE by name, with the
    defaults the tables (and so the CLI, the Python API and serve) give them."""
    import inspect

    from imgroute.request import build_constraints, build_request

    for function, group in ((build_request, JOB), (build_constraints, ROUTE)):
        params = inspect.signature(function).parameters
        taken = {name: p.default for name, p in params.items() if p.kind == p.KEYWORD_ONLY}
        assert taken == {option.name: option.default for option in group}, function.__name__


def test_an_unknown_keyword_is_a_type_error_as_python_says_it():
    with pytest.raises(TypeError, match="plan\\(\\) got an unexpected keyword argument 'max_price'"):
        imgroute.quote("a lighthouse", max_price="1")


def test_words_and_numbers_read_right(cli, fakes, isolated_home):
    assert cli("jobs").out.strip() == "no jobs in the ledger yet"
    assert cli("gen", "a fox", "--out", "out", *only(fakes, "kie")).code == 0
    assert cli("jobs", "--state", "planned").out.strip() == "no jobs match"
    advised = cli("advise", "--since", "2026-01-01", "--json").json()
    assert advised["images_per_month"] == round(advised["images_per_month"], 1)
    r = cli("nosuchcommand")
    assert r.err.startswith("error: No such command 'nosuchcommand'; see: imgroute --help")
    (isolated_home / "config.yaml").write_text("plan: {apiframe: growth}\n")
    assert "did you mean plans?" in cli("quote", "x").err


def test_one_and_negative_read_right_in_the_less_travelled_lines(capsys):
    """One job left is 'was', not 'were'; a loss is -$0.02, not $-0.02 (spend --savings)."""
    import io

    from rich.console import Console

    from imgroute.cli.batch import _Run
    from imgroute.output.text.money import print_savings

    run = _Run.__new__(_Run)  # (only its wording is asked for)
    run.stdout_gone = False
    run.stopping(1)
    assert "the 1 job already sent to finish and be recorded (Ctrl-C again to leave it" in capsys.readouterr().err
    shown = io.StringIO()
    row = {"period": "2026-12", "jobs": 1, "spent_usd": 0.06, "default_offer": "kie/gpt-image-2",
           "at_default_usd": 0.04, "saved_vs_default_usd": -0.02, "cheapest_offer": "kie/gpt-image-2",
           "at_cheapest_usd": 0.04, "saved_vs_cheapest_usd": -0.02}  # fmt: skip
    print_savings(Console(file=shown, width=200), {"savings": [row]})
    assert "-$0.02" in shown.getvalue() and "$-" not in shown.getvalue()
