"""How `imgroute serve` stops: uvicorn's Server, told that a stop sends nothing more.

The first Ctrl-C or SIGTERM: no job sends anything it has not sent already (those waiting for their
turn end cancelled, their clients answered 503: nothing was charged, send it again), and the
server waits for the jobs that were sent, saving their images. The second of either stops waiting,
leaving those jobs in the ledger for `imgroute jobs resume`. (uvicorn alone forces the exit on a
second SIGINT only, and goes on sending queued jobs while it waits.)
"""

from __future__ import annotations

import sys
import threading

import uvicorn


class StoppingServer(uvicorn.Server):
    def __init__(self, gateway, config: uvicorn.Config):
        super().__init__(config)
        self.gateway = gateway

    def handle_exit(self, sig, frame) -> None:
        if self.should_exit:  # the second signal
            self._captured_signals.append(sig)
            self.force_exit = True
            return
        # On the main thread, which is the event loop's: it may be inside the scheduler's locks
        # (starting a job) when the signal lands, so the stop, which takes them, runs on its own.
        threading.Thread(target=self.gateway.stop, name="imgroute-stop").start()
        sys.stderr.write(
            "stopping: nothing more is sent; waiting for the jobs already sent (stop again to stop waiting: "
            "they stay in the ledger for imgroute jobs resume)\n"
        )
        super().handle_exit(sig, frame)
