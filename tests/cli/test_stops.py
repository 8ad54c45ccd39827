"""How a command stops. Ctrl-C (SIGINT) and SIGTERM end it cleanly with 130 and 143, wherever they
land (a confirmation prompt, a request under way); a batch sends nothing new after the first
and, after a second, leaves the jobs it sent journaled for the next run; a reader that went away
from stdout ends a command with 141. Each test runs imgroute in a process of its own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import only, submitted, wait_for


def reading(pid: int) -> bool:
    """Whether the process's main thread is asleep in the kernel other than on a lock (once it has
    written its prompt: in the read of its answer). Where no /proc tells, it is taken as reading."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except (OSError, IndexError):
        return True
    return state == "S" and not wchan.startswith("futex")


def said(path: Path, text: str) -> bool:
    """Whether the stderr written to `path` says `text` yet."""
    return text in path.read_text()


# -- Ctrl-C and SIGTERM ----------------------------------------------------------------------------


def test_ctrl_c_at_the_confirmation_prompt_exits_130(tmp_path, isolated_home):
    import os
    import pty
    import signal
    import subprocess
    import sys
    import time

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "a"}) + "\n")
    env = {**os.environ, "KIE_API_KEY": "k"}
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgroute", "batch", str(rows)],
        stdin=slave,
        stderr=subprocess.PIPE,
        env=env,
        # as at a terminal: a test run started in the background inherits Ctrl-C ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 20
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        seen += os.read(proc.stderr.fileno(), 1024)
    # The prompt is written before input() starts reading; a Ctrl-C in between can be swallowed by
    # readline's own signal set-up, so wait until it is reading, as a person would.
    wait_for(lambda: reading(proc.pid))
    for _ in range(20):  # a loaded machine can still lose the first one: press Ctrl-C again, as a person would
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=1)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        proc.kill()  # never answered Ctrl-C: fail below rather than hang
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=20) == 130 and "Traceback" not in err and "interrupted" in err
    os.close(master)


def test_sigterm_stops_gen_as_ctrl_c_does_and_exits_143(fakes, tmp_path, isolated_home):
    fakes["kie"].job_seconds = 8
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgroute", "gen", "an owl", "--out", str(tmp_path), *only(fakes, "kie")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: submitted(isolated_home))  # (a charge alone: its answer may not be read yet)
    finally:
        proc.terminate()  # (also when the wait fails: no process is left behind)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 143, err
    assert "error: terminated; job " in err and "finish it with: imgroute jobs resume" in err
    fakes["kie"].job_seconds = None


# -- a batch stopped: nothing new is sent, and a second stop leaves what was sent ------------------


def start_batch(tmp_path, rows: list[dict], *args: str, **popen) -> subprocess.Popen:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    command = [sys.executable, "-m", "imgroute", "batch", str(path), "--yes", "--json", "--out", str(tmp_path / "o")]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(command + list(args), **{**pipes, **popen})


def test_ctrl_c_stops_new_submits_at_once_and_a_second_leaves_the_jobs_for_the_next_run(fakes, tmp_path, cli):
    import os
    import signal
    import subprocess
    import sys
    import time

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("limits:\n  kie: {concurrency: 4, per_minute: 600}\n")
    fakes["kie"].job_seconds = 6
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps({"prompt": f"owl {i}", "provider": "kie"}) for i in range(30)))
    env = {**os.environ, "IMGROUTE_HOME": str(home), "IMGROUTE_TIME_SCALE": "1"}
    command = [sys.executable, "-m", "imgroute", "batch", str(rows), "--yes", "--json", "--out", str(tmp_path / "o")]
    errors = tmp_path / "stderr.txt"  # (read while it runs)
    with open(errors, "w") as stderr:
        proc = subprocess.Popen(
            command + ["--concurrency", "4"], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    wait_for(lambda: fakes["kie"].charges >= 2)  # jobs are under way
    proc.send_signal(signal.SIGINT)
    # The stop is acted on (it says so, with how many jobs it waits for) and those jobs' requests
    # have all reached the fake: from now on nothing new goes out.
    wait_for(lambda: said(errors, "no new request is sent"))
    waiting = re.search(r"waiting for the (\d+) jobs? already sent", errors.read_text())
    wait_for(lambda: fakes["kie"].charges >= (int(waiting.group(1)) if waiting else 0))
    sent = fakes["kie"].charges
    time.sleep(1.0)  # a second in which the rows left would have gone out (one every 0.1 s)
    assert fakes["kie"].charges == sent
    proc.send_signal(signal.SIGINT)  # and a second Ctrl-C does not wait for the jobs under way
    started = time.monotonic()
    out, _ = proc.communicate(timeout=30)
    err = errors.read_text()
    assert proc.returncode == 130 and time.monotonic() - started < 3, err
    assert "interrupted: no new request is sent" in err and "left at their providers" in err
    assert "Traceback" not in err
    fakes["kie"].job_seconds = None
    env_home = {"IMGROUTE_HOME": str(home)}
    done = subprocess.run(command, env={**os.environ, **env_home, "IMGROUTE_TIME_SCALE": "0"}, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert fakes["kie"].charges == 30  # the rerun finished what was left, and paid for nothing twice
    assert len(list((tmp_path / "o").glob("*.png"))) == 30


@pytest.mark.parametrize(("signum", "code", "word"), [(2, 130, "interrupted"), (15, 143, "terminated")])
def test_a_stop_ends_rows_waiting_for_their_turn_at_once(fakes, tmp_path, isolated_home, signum, code, word):
    import time

    # OpenAI's default pace: 5 submits a minute, so after the first row the next waits 12 s for its turn
    proc = start_batch(tmp_path, [{"prompt": f"fox {i}", "provider": "openai", "quality": "low"} for i in range(8)])
    wait_for(lambda: fakes["openai"].charges >= 1)
    proc.send_signal(signum)
    stopped = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert time.monotonic() - stopped < 5  # not the minute the paced rows would have waited
    assert f"{word}: no new request is sent" in err and "Traceback" not in err
    assert f"error: {word}: 1 row done, 7 rows not started (nothing was sent for them)" in err
    outcomes = [json.loads(line)["outcome"] for line in out.splitlines()]
    assert sorted(outcomes) == ["done"] + ["not_started"] * 7
    assert fakes["openai"].charges == 1


def test_a_stop_counts_the_rows_it_never_reached(fakes, tmp_path, isolated_home):
    import re
    import signal

    # (rows are read a dozen ahead of two slots: most of the file is never reached)
    proc = start_batch(tmp_path, [{"prompt": f"fox {i}", "provider": "openai", "quality": "low"} for i in range(40)],
                       "--concurrency", "2")  # fmt: skip
    wait_for(lambda: fakes["openai"].charges >= 1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    said = re.search(r"terminated: (\d+) rows? done, (\d+) rows? not started \(nothing was sent for them\), "
                     r"(\d+) rows? not reached; run the same command again", err)  # fmt: skip
    assert said is not None, err
    done, unsent, unread = map(int, said.groups())
    assert done + unsent + unread == 40 and unread > 0 and done == fakes["openai"].charges
    assert len(out.splitlines()) == done + unsent  # (a line for each row it reached)


def test_a_second_stop_leaves_the_sent_jobs_even_when_sigint_came_in_ignored(fakes, tmp_path, isolated_home):
    import signal

    isolated_home.mkdir()
    (isolated_home / "config.yaml").write_text("limits:\n  kie: {concurrency: 3, per_minute: 6000}\n")
    fakes["kie"].job_seconds = 8
    ignored = signal.SIG_IGN  # as a shell starts a background job: SIGINT ignored from the start
    rows = [{"prompt": f"owl {i}", "provider": "kie"} for i in range(10)]
    errors = tmp_path / "stderr.txt"  # (read while it runs)
    with open(errors, "w") as stderr:
        proc = start_batch(tmp_path, rows, stderr=stderr, preexec_fn=lambda: signal.signal(signal.SIGINT, ignored))
    wait_for(lambda: fakes["kie"].charges >= 3)
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: said(errors, "no new request is sent"))  # the first stop is taken: the second is another
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    err = errors.read_text()
    assert proc.returncode == 130, err
    assert "interrupted: no new request is sent; waiting for the 3 jobs already sent" in err
    assert "3 jobs already sent were left at their providers, journaled" in err
    assert fakes["kie"].charges == 3
    fakes["kie"].job_seconds = None


# -- a closed stdout -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("pricing",), ("providers",), ("spend",), ("quote", "a fox", "--explain"), ("jobs", "--json")]
)
def test_a_read_only_command_whose_reader_went_away_ends_quietly_with_141(isolated_home, args):
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgroute", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and err == ""


def test_a_batch_whose_reader_went_away_stops_sending_finishes_what_was_sent_and_exits_141(
    fakes, tmp_path, isolated_home
):
    isolated_home.mkdir()
    (isolated_home / "config.yaml").write_text("limits:\n  kie: {concurrency: 2, per_minute: 6000}\n")
    fakes["kie"].job_seconds = 0.3
    rows = [{"prompt": f"heron {i}", "provider": "kie"} for i in range(20)]
    proc = start_batch(tmp_path, rows, "--concurrency", "2")
    first = json.loads(proc.stdout.readline())  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 141, err
    assert first["outcome"] == "done" and "Traceback" not in err
    assert "stdout was closed: no new request is sent" in err
    assert "error: stdout was closed: " in err and "what was sent was finished and saved" in err
    charged = fakes["kie"].charges
    assert charged < 20
    saved = len(list((tmp_path / "o").glob("*.png")))
    assert saved == charged  # every job sent was finished and its image saved
    fakes["kie"].job_seconds = None
    again = start_batch(tmp_path, rows, "--concurrency", "2")
    again.communicate(timeout=60)
    assert again.returncode == 0 and fakes["kie"].charges == 20  # the rest, and nothing twice
