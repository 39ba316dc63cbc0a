"""The difftk command line."""

import os

# Before torch loads (its OpenMP runtime reads this once): idle OpenMP workers sleep instead of
# spinning for milliseconds after every operation. On 2 cores the spinning starved the
# Winograd convolutions of unet-attn, which run on their own thread pool (the measurement:
# docs/benchmarks.md). A value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
