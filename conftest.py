"""Settings shared by every test directory of the repository, and the CLI's test helpers for all of them."""

import os

# unet-attn times its 3×3 convolution algorithms (oneDNN, NNPACK) on the running machine and keeps
# the choices under ~/.cache: tests pin oneDNN, so that no result depends on a timing and no test
# writes there (plugins/unet_attn/tests/test_conv_choice.py tests the choice and both algorithms).
os.environ.setdefault("DIFFTK_CONV3X3", "onednn")
# The CLI's tables take their width from COLUMNS where it is set, and are never folded when written to a file
# (difftk_cli/console.py). pytest-xdist's workers set COLUMNS=80; the tests see the plain environment of a
# command whose output goes to a file, however they are run.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

from hypothesis import HealthCheck, settings

# Sized for a 2-core machine: enough examples to find counterexamples, deadlines that
# tolerate a loaded CI box. `HYPOTHESIS_PROFILE=thorough` runs ten times more examples.
settings.register_profile("ci", max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=600, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Tests use small tensors: one thread is as fast, and avoids oversubscribing a shared 2-core
# machine (OpenMP workers spinning against each other made some tests 100× slower).
import torch  # noqa: E402

torch.set_num_threads(1)

# The CLI's fixtures (toy_pipeline) for the tests in cli/tests, tests/ and the plugins' tests that run a command;
# the core's fixtures come from difftk.testing.pytest_plugin, a pytest11 entry point.
pytest_plugins = ("difftk_cli.testing",)
