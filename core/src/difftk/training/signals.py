"""Stopping a run cleanly: the first Ctrl-C, SIGTERM (a job scheduler, ``timeout``) or SIGHUP (a
closed terminal) asks the loop to finish its step, save and stop; a second acts at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

#: the signals that stop a run cleanly: Ctrl-C, a job scheduler or `timeout`, a closed terminal
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def catch_stop_signals(on_stop: Callable[[int], None]) -> Iterator[None]:
    """Within the block, the first of :data:`STOP_SIGNALS` calls ``on_stop(signum)`` and restores
    the previous handlers, so a second signal acts as it would without us. Outside the main
    thread (where Python cannot install handlers) the block runs unguarded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        for sig, before in previous.items():
            signal.signal(sig, before)
        on_stop(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)
