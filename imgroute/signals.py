"""How imgroute is told to stop, and what it exits with.

Ctrl-C (SIGINT) and SIGTERM (what `docker stop`, systemd and CI runners send) make the same clean
stop; only the exit code says which (130, 143: 128 plus the signal). A reader that goes away from
stdout (`| head -1`) ends a command with 141, as it ends Unix tools, after any paid work is saved.

Only the CLI installs handlers (`install`): a program using the Python API keeps its own.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143
EXIT_STDOUT_CLOSED = 128 + signal.SIGPIPE  # 141

_received: list[int] = []  # the stop signals this process was sent, in order


def install() -> None:
    """SIGTERM stops the CLI as Ctrl-C does: it raises KeyboardInterrupt in the main thread, so
    every stop takes the one path Ctrl-C takes (the journal is left exact, the resume is said)."""
    _received.clear()  # (the tests run the CLI many times in one process)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


def _raise(signum, frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def exit_code() -> int:
    """130 after Ctrl-C, 143 after SIGTERM (the first signal decides)."""
    return EXIT_SIGTERM if _received and _received[0] == signal.SIGTERM else EXIT_SIGINT


def stop_word() -> str:
    return "terminated" if exit_code() == EXIT_SIGTERM else "interrupted"


@contextmanager
def stop_requests(asked: threading.Event) -> Iterator[threading.Event]:
    """While many jobs run (batch, jobs resume --all): the first SIGINT or SIGTERM sets `asked`, a
    request to stop acted on between two results (never half-way through writing one); the next
    one raises KeyboardInterrupt, to stop waiting for the jobs already sent.

    A process started in the background by a shell inherits SIGINT ignored; it is handled here all
    the same, and the second one too (restoring the inherited handler would ignore it)."""
    if threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def again(signum, frame) -> None:
        _received.append(signum)
        raise KeyboardInterrupt

    def first(signum, frame) -> None:
        _received.append(signum)
        asked.set()
        for each in (signal.SIGINT, signal.SIGTERM):
            signal.signal(each, again)

    previous = {each: signal.signal(each, first) for each in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (POLLERR on its write end): known before the
    next write fails, so a batch stops sending at once, not only when its next row ends."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a test's captured stdout has no descriptor
        return False
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR and POLLHUP are always reported
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def discard_stdout() -> None:
    """After a closed stdout: what is still buffered for it, or written later, goes nowhere (not a
    second error at exit)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass
