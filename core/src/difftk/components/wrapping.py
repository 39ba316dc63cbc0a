"""The one way to wrap a denoiser: :class:`DenoiserWrapper`.

Guidance and edits return a denoiser that calls another. The wrapper must answer what the
:class:`~difftk.components.protocols.Denoiser` protocol declares exactly as the wrapped one does
(``prediction``, ``num_classes``, ``learned_variance``), or a class-conditional or
learned-variance model silently breaks behind it; and it must act on the prediction channels
only, keeping the variance channels of a learned-variance model (Nichol & Dhariwal 2021). Both
are done here, once.
"""

from __future__ import annotations

import torch

from difftk.components.protocols import Denoiser, learned_variance_of, num_classes_of


class DenoiserWrapper(torch.nn.Module):
    """A denoiser that calls ``inner``: the same declared attributes, and the variance channels kept.

    A subclass overrides :meth:`transform`, which returns the prediction channels and the variance
    channels (``None`` without a learned variance), and reads the wrapped denoiser through
    :meth:`inner_output`, which splits them. The base ``transform`` passes the output through.
    """

    def __init__(self, inner: Denoiser) -> None:
        super().__init__()
        self.inner = inner
        self.prediction: str = inner.prediction
        self.num_classes: int = num_classes_of(inner)
        self.learned_variance: bool = learned_variance_of(inner)

    def inner_output(self, x_t: torch.Tensor, t: torch.Tensor,
                     cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The wrapped denoiser's prediction channels and its variance channels (``None`` without)."""
        out = self.inner(x_t, t, cond=cond)
        if self.learned_variance:
            pred, var = out.chunk(2, dim=1)
            return pred, var
        return out, None

    def transform(self, x_t: torch.Tensor, t: torch.Tensor,
                  cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The wrapper's prediction and variance channels; by default the wrapped denoiser's."""
        return self.inner_output(x_t, t, cond)

    def reset(self) -> None:
        """Forget what was carried across the steps of a draw (APG's momentum); by default nothing.
        The core calls it (:func:`reset_all`) before every batch it samples."""

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        pred, var = self.transform(x_t, t, cond)
        return pred if var is None else torch.cat([pred, var], dim=1)


def reset_all(denoiser: Denoiser) -> None:
    """:meth:`DenoiserWrapper.reset` on every wrapper in ``denoiser`` (wrappers nest: an edit around a
    guidance), so a new draw starts from no state whatever drew before it."""
    modules = denoiser.modules() if isinstance(denoiser, torch.nn.Module) else ()
    for module in modules:
        if isinstance(module, DenoiserWrapper):
            module.reset()
