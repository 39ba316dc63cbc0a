"""Hypothesis strategies for diffusion maths, for our tests and for plugin authors'.

Each strategy draws values where the maths is well conditioned in float64; the ranges are
documented so a failing example can be read.
"""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np


def alpha_bars(min_value: float = 1e-6, max_value: float = 1 - 1e-6) -> st.SearchStrategy[float]:
    """ᾱ ∈ [1e-6, 1 − 1e-6]: away from the endpoints where 1/√ᾱ or 1/√(1−ᾱ) blow up."""
    return st.floats(min_value=min_value, max_value=max_value, allow_nan=False)


@st.composite
def alpha_bar_pairs(draw, min_ratio: float = 1e-4) -> tuple[float, float]:
    """(ᾱ_s, ᾱ_t) with s < t, i.e. ᾱ_s > ᾱ_t, and 1 − ᾱ_t/ᾱ_s ≥ ``min_ratio``."""
    ab_s = draw(alpha_bars(min_value=1e-4))
    frac = draw(st.floats(min_value=min_ratio, max_value=1 - 1e-6))
    return ab_s, ab_s * (1 - frac)


def times(min_value: float = 0.0, max_value: float = 1.0) -> st.SearchStrategy[float]:
    """t ∈ [0, 1], the continuous diffusion time."""
    return st.floats(min_value=min_value, max_value=max_value, allow_nan=False)


def step_counts(max_steps: int = 1000) -> st.SearchStrategy[int]:
    """A number of sampling steps K ∈ [1, max_steps]."""
    return st.integers(min_value=1, max_value=max_steps)


@st.composite
def beta_sequences(draw, min_size: int = 2, max_size: int = 200) -> np.ndarray:
    """β_1..β_T in [1e-5, 0.5], float64: any valid discrete noise process."""
    n = draw(st.integers(min_value=min_size, max_value=max_size))
    values = draw(st.lists(st.floats(min_value=1e-5, max_value=0.5), min_size=n, max_size=n))
    return np.asarray(values, dtype=np.float64)


@st.composite
def component_names(draw, kind: str) -> str:
    """The name of a registered component of ``kind`` (read from the loaded plugins)."""
    import difftk

    names = difftk.available(kind)
    if not names:
        raise ValueError(f"no {kind} is registered")
    return draw(st.sampled_from(names))
