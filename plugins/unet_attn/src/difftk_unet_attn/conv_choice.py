"""Which algorithm runs a 3×3 convolution on this machine: chosen by timing, once per shape.

Every candidate computes the same stride-1, padding-1 3×3 convolution; they differ in speed,
and which is faster depends on the CPU, the thread count, OpenMP's wait policy and the shape.
So each shape [N, C_in, C_out, H, W] large enough to matter is timed once per process with
every available candidate, interleaved (a, b, a, b, …, so that load from other processes and
the thread pools' state hit both alike), the minimum of a few rounds kept (the minimum is the
estimate least moved by other jobs on shared cores), and the winner is remembered. An
alternative to the default replaces it only when it times at least :data:`MARGIN` faster, so
noise does not flip a choice.

Choices are kept per process and, unless switched off, on disk in a small JSON file keyed by
CPU model, torch version, thread count and wait policy, so that a later process on the same
machine — a resumed training run above all — takes the same algorithms without timing again.
A choice already in the file when a process comes to write its own wins, so processes started
together (DDP ranks) settle on one. The file is read as untrusted JSON; anything malformed in it
is ignored and re-measured, and it is written atomically. ``DIFFTK_CONV3X3_CACHE`` names another
file, or ``off``. Measuring draws its inputs from a generator of its own, never the global one.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from difftk.errors import DifftkError
from difftk.runtime.files import atomic_write_text
from difftk.runtime.untrusted import read_json

#: The algorithms: oneDNN's direct/implicit-GEMM convolution behind ``F.conv2d`` (the default),
#: and NNPACK's Winograd F(6×6, 3×3) (Lavin & Gray 2016).
ALGORITHMS: tuple[str, ...] = ("onednn", "nnpack")
DEFAULT = "onednn"
#: An alternative is chosen only when it times this fraction faster than the default.
MARGIN = 0.03
#: Timed rounds per candidate (after one untimed call each).
ROUNDS = 5
#: Fewest multiply-adds for which the candidates are timed; smaller convolutions take the default
#: (timing them would cost more than any gain, and their choice would be noise).
MIN_TIMED_MACS = 2**25
CACHE_ENV = "DIFFTK_CONV3X3_CACHE"
FORMAT = "difftk conv3x3 choices 1"


class Shape(NamedTuple):
    """A 3×3 convolution of x [N, C_in, H, W] by W [C_out, C_in, 3, 3], padding 1."""

    N: int
    C_in: int
    C_out: int
    H: int
    W: int

    @property
    def macs(self) -> int:
        return 9 * self.N * self.C_in * self.C_out * self.H * self.W

    def key(self) -> str:
        return ",".join(map(str, self))


@functools.cache
def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it, else what the platform module knows (read once:
    every convolution call asks)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_key() -> str:
    """What a measured choice depends on besides the shape."""
    policy = os.environ.get("OMP_WAIT_POLICY", "").strip().lower() or "default"
    return f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads | OMP_WAIT_POLICY={policy}"


def default_cache_path() -> Path | None:
    """``$DIFFTK_CONV3X3_CACHE`` (``off``: none), else ``$XDG_CACHE_HOME/difftk/conv3x3.json``
    (``~/.cache`` when unset)."""
    raw = os.environ.get(CACHE_ENV, "").strip()
    if raw.lower() in ("off", "0", "no", "false"):
        return None
    if raw:
        return Path(raw).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "difftk", "conv3x3.json")


def measure(candidates: Mapping[str, Callable[[], object]], *, rounds: int = ROUNDS,
            timer: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """The least time of ``rounds`` calls of each candidate, called in turn (a, b, a, b, …) after
    one untimed call each (which pays first-use costs: allocation, thread pools, packing)."""
    for run in candidates.values():
        run()
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(rounds):
        for name, run in candidates.items():
            start = timer()
            run()
            best[name] = min(best[name], timer() - start)
    return best


def pick(times: Mapping[str, float], *, default: str = DEFAULT, margin: float = MARGIN) -> str:
    """The fastest candidate, except that the default stays unless another beats it by ``margin``."""
    fastest = min(times, key=lambda name: (times[name], name != default))
    if default in times and fastest != default and times[fastest] >= (1.0 - margin) * times[default]:
        return default
    return fastest


class Chooser:
    """Measured choices, remembered per (machine key, shape) in memory and in the cache file."""

    def __init__(self, cache_path: Path | None | str = "default", *, rounds: int = ROUNDS,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self._cache_path = cache_path
        self.rounds, self.timer = rounds, timer
        self._memo: dict[tuple[str, str], str] = {}
        self._disk: dict[str, dict[str, str]] | None = None
        #: Wall-clock seconds this process has spent measuring.
        self.seconds = 0.0

    @property
    def cache_path(self) -> Path | None:
        return default_cache_path() if self._cache_path == "default" else self._cache_path

    def choose(self, shape: Shape, candidates: Callable[[Shape], Mapping[str, Callable[[], object]]]) -> str:
        """The algorithm for ``shape``: remembered, read from the cache file, or measured with the
        candidates that ``candidates(shape)`` makes (then remembered and written)."""
        if shape.macs < MIN_TIMED_MACS:
            return DEFAULT
        machine, key = machine_key(), shape.key()
        choice = self._memo.get((machine, key))
        if choice is None:
            choice = self._load().get(machine, {}).get(key)
            if choice is None:
                start = time.perf_counter()
                runs = candidates(shape)
                choice = pick(measure(runs, rounds=self.rounds, timer=self.timer)) if len(runs) > 1 else DEFAULT
                self.seconds += time.perf_counter() - start
                choice = self._store(machine, key, choice)
            self._memo[(machine, key)] = choice
        return choice

    def chosen(self) -> dict[str, str]:
        """{shape key: algorithm} chosen so far in this process for the current machine key."""
        machine = machine_key()
        return {key: choice for (m, key), choice in self._memo.items() if m == machine}

    def forget(self) -> None:
        """Drop the choices held in memory (the cache file stays)."""
        self._memo.clear()
        self._disk = None

    def _load(self) -> dict[str, dict[str, str]]:
        if self._disk is None:
            self._disk = read_choices(self.cache_path)
        return self._disk

    def _store(self, machine: str, key: str, choice: str) -> str:
        """Write ``choice`` unless the file already has one for this shape, which is returned
        instead: processes started together (ranks, a resumed run) settle on the first written."""
        path = self.cache_path
        if path is None:
            return choice
        choices = read_choices(path)  # another process may have added its own since
        self._disk = choices
        stored = choices.setdefault(machine, {})
        if key in stored:
            return stored[key]
        stored[key] = choice
        try:
            atomic_write_text(path, json.dumps({"format": FORMAT, "choices": choices}, indent=1, sort_keys=True))
        except DifftkError as err:  # a read-only home: the choice holds for this process only
            warnings.warn(f"convolution choices not saved: {err}", RuntimeWarning, stacklevel=2)
        return choice


class _Malformed(Exception):
    pass


def read_choices(path: Path | None) -> dict[str, dict[str, str]]:
    """The choices stored in ``path``: {machine key: {shape key: algorithm}}. A missing,
    unreadable or malformed file, and any entry that is not a known algorithm, count as none."""
    if path is None:
        return {}
    try:
        raw = path.read_bytes()
    except OSError:
        return {}
    try:
        data = read_json(raw, what="the convolution choices", max_depth=4, error=_Malformed)
    except _Malformed:
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("choices"), dict):
        return {}
    return {machine: {key: algo for key, algo in shapes.items() if isinstance(key, str) and algo in ALGORITHMS}
            for machine, shapes in data["choices"].items() if isinstance(machine, str) and isinstance(shapes, dict)}
