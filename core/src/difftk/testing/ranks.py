"""Processes launched as torchrun would launch them, for tests of multi-process code on one machine.

:func:`launch_ranks` starts one process per rank with the variables ``torch.distributed``'s
``env://`` rendezvous reads (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``) on a free local port, one thread each, and waits for all of them. A port taken by
another program between choosing it and binding it is retried with a fresh one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence


def free_port() -> int:
    """A local TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(stderr: str) -> bool:
    return "EADDRINUSE" in stderr or "address already in use" in stderr.lower()


def launch_ranks(argv: Sequence[str], nproc: int, *, timeout: float = 120, attempts: int = 3) -> list[tuple[int, str]]:
    """Run ``python argv…`` in ``nproc`` processes, ranks 0…nproc−1 (with one process, no
    ``WORLD_SIZE``: a plain run), and return each one's (exit status, stderr) in rank order."""
    for attempt in range(attempts):
        port = str(free_port())
        procs = []
        for rank in range(nproc):
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
            if nproc == 1:
                env.pop("WORLD_SIZE")
            procs.append(subprocess.Popen([sys.executable, *map(str, argv)], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        results = [(p.returncode, stderr) for p in procs for _, stderr in [p.communicate(timeout=timeout)]]
        if attempt == attempts - 1 or not any(code and _port_taken(err) for code, err in results):
            return results
    raise ValueError(f"attempts={attempts}: give at least 1")


__all__ = ["free_port", "launch_ranks"]
