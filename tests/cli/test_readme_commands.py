"""Every `imgroute` command in the README runs as written, against the provider fakes.

The README's shell blocks are read in order and run in one bash session (so `J=$(imgroute gen ...
--detach)` and then `imgroute jobs resume "$J"` work as a reader would type them), in a folder
holding the files the examples name. The only change made to a command is filling in the example
job id (`3f1c9a52`) with a job of this run. Commands that do not exit 0 are listed with the code
they should exit with and why; anything else (exit 1, a traceback) fails. The team-ledger commands
(`imgroute ledger ...`) run with IMGROUTE_LEDGER_URL set, as the README's `export` line sets it, to
a database of the tests' own PostgreSQL.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from PIL import Image

from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()
EXAMPLE_JOB = "3f1c9a52"

# Commands not run here, and why.
NOT_RUN = (
    "imgroute serve",  # a server runs until stopped: tests/serve/test_serve.py drives it, and its curl examples
    "imgroute mcp",  # a stdio server for an agent: tests/agents/test_mcp.py drives it with the MCP SDK's client
)
# Commands that end with another code than 0, as the README says they do.
EXPECTED = {
    "imgroute batch catalogue.csv --max-total 25": 2,  # "without a terminal it needs --yes"
    f"imgroute jobs settle {EXAMPLE_JOB} --charged": 2,  # settles only a job whose submit's fate is unknown
    f"imgroute jobs settle {EXAMPLE_JOB} --not-charged": 2,
}


def readme_commands() -> list[str]:
    """The `imgroute` lines of the README's sh blocks, in order (continuation lines joined)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if re.match(r"^(J=\$\()?imgroute ", line) and not line.startswith(NOT_RUN):
                commands.append(line)
    return commands


def workspace(folder: Path) -> None:
    """The files the examples name."""
    Image.new("RGB", (1024, 1024), (30, 60, 90)).save(folder / "photo.png")
    Image.new("RGBA", (1024, 1024), (0, 0, 0, 0)).save(folder / "sky.png")
    Image.new("RGB", (800, 600), (90, 60, 30)).save(folder / "style.jpg")
    rows = [{"prompt": f"catalogue item {i}", "quality": "low"} for i in range(3)]
    (folder / "catalogue.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "catalogue.csv").write_text("prompt,quality\na red chair,low\na blue lamp,medium\n")
    (folder / "month.yaml").write_text("- {quality: high, count: 300}\n- {quality: low, n: 4, count: 100}\n")
    (folder / "month.csv").write_text("quality,count\nhigh,300\nmedium,200\n")


def test_every_readme_command_runs_as_written_against_the_fakes(fakes, openrouter, tmp_path, isolated_home):
    commands = readme_commands()
    assert len(commands) >= 25  # the README's examples, not an empty match
    from tests.pg_cluster import cluster

    workspace(tmp_path)
    script = ["set -u", f"TEAM_URL='{cluster().new_database()}'"]
    for number, command in enumerate(commands):
        filled = command.replace(EXAMPLE_JOB, '"$LAST_JOB"')
        if command.startswith("imgroute ledger "):
            filled = f'(export IMGROUTE_LEDGER_URL="$TEAM_URL"; {filled.split("  #")[0]})'

        script.append(
            "LAST_JOB=$(imgroute jobs --json --limit 1 | python3 -c "
            '\'import json,sys; jobs=json.load(sys.stdin); print(jobs[0]["job_id"] if jobs else "")\')'
        )
        script += [filled, f'echo "::{number} $?" >&2']
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    codes = {int(n): int(rc) for n, rc in re.findall(r"^::(\d+) (\d+)$", done.stderr, re.M)}
    assert len(codes) == len(commands), done.stderr[-2000:]
    wrong = {commands[n]: rc for n, rc in codes.items() if rc != EXPECTED.get(commands[n].split("  #")[0].strip(), 0)}
    assert wrong == {}, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
