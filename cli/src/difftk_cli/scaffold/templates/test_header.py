"""Tests of the COMPONENT_KIND `my-plugin`: the conformance kit, then its own properties."""

import difftk
import torch
from difftk.testing import (  # noqa: F401
    GaussianMixtureOracle,
    GaussianOracle,
    check_denoiser,
    check_guidance,
    check_objective,
    check_sampler,
    check_schedule,
)


