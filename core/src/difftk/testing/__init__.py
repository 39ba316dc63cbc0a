"""difftk.testing: the conformance kit for plugin authors.

- :mod:`~difftk.testing.conformance` — ``check_schedule``, ``check_sampler``,
  ``check_objective``, ``check_denoiser``, ``check_guidance``, ``check_autoencoder``, ``check_logger``: one contract check per protocol
  (the sampler's, with its convergence on an exact oracle, in :mod:`~difftk.testing.sampler_contract`).
- :mod:`~difftk.testing.oracles` — exact denoisers of Gaussian and Gaussian-mixture data.
- :mod:`~difftk.testing.strategies` — hypothesis strategies for the maths.
- :mod:`~difftk.testing.reference` — small unregistered components to test others with.
- :mod:`~difftk.testing.ranks` — ``launch_ranks``: a script run in several processes as torchrun would.
- :func:`plugin_host` and the pytest fixtures ``difftk_host`` and ``register_plugin``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from difftk.components import plugins
from difftk.testing.conformance import (
    CHECKS,
    ConformanceError,
    check_autoencoder,
    check_denoiser,
    check_guidance,
    check_logger,
    check_objective,
    check_sampler,
    check_schedule,
)
from difftk.testing.oracles import GaussianMixtureOracle, GaussianOracle
from difftk.testing.reference import ReferenceAutoencoder, ReferenceLinearSchedule, ReferenceVPSchedule, TinyDenoiser


@contextlib.contextmanager
def plugin_host(*, load_entry_points: bool = True, strict: bool = False) -> Iterator[plugins.PluginHost]:
    """A fresh plugin host installed as the process-wide one for the duration of the block.

    Register plugins defined in a test with ``host.register(obj, name="x")``; everything is
    restored afterwards.
    """
    saved = plugins._HOST
    host = plugins.PluginHost(strict=strict)
    if load_entry_points:
        host.load_entry_points()
    plugins._HOST = host
    try:
        yield host
    finally:
        plugins._HOST = saved


__all__ = [
    "CHECKS", "ConformanceError", "GaussianMixtureOracle", "GaussianOracle", "ReferenceAutoencoder",
    "ReferenceLinearSchedule", "ReferenceVPSchedule", "TinyDenoiser", "check_autoencoder", "check_denoiser", "check_guidance", "check_logger", "check_objective",
    "check_sampler", "check_schedule", "plugin_host",
]
