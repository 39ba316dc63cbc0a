"""Sampling and editing through a first stage: samplers run on latents, the model hands back data.

With an autoencoder in the pipeline (Rombach et al. 2022, §3) every sampler draws scaled latents of
the autoencoder's latent shape, and :func:`decoded` turns them into data. An edit (SDEdit,
inpainting) is checked against the data first, then moved to latent space: the images are encoded
to their posterior mean (the noise SDEdit adds is its own), and the mask is brought to the latent
resolution by max pooling over each latent cell's block of pixels (:func:`latent_mask`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from difftk.components.autoencoding import from_latent, space_shape, to_latent
from difftk.components.protocols import NoiseSchedule
from difftk.sampling.edit import Edit

#: examples encoded or decoded at once, so memory does not grow with the number of samples
CHUNK = 64


def latent_mask(mask: torch.Tensor, latent_shape: tuple[int, ...]) -> torch.Tensor:
    """A pixel mask [B, 1 or C, H, W] (1 = generate, 0 = keep) at the latent resolution [B, 1, h, w].

    A latent cell is generated when any pixel of its block is to be generated (max pooling over the
    channels and the block): each latent decodes to its whole block, so keeping a cell that covers a
    pixel to be generated would pin that pixel to the image being edited. The region kept in latent
    space is therefore the known region shrunk to whole cells, never grown.
    """
    m = mask.amax(dim=1, keepdim=True)
    return F.adaptive_max_pool2d(m, tuple(latent_shape[1:])) if m.ndim == 4 else m


def encoded(autoencoder: Any, x: torch.Tensor) -> torch.Tensor:
    """The scaled posterior means of ``x``, CHUNK examples at a time."""
    return torch.cat([to_latent(autoencoder, part) for part in x.split(CHUNK)])


def decoded(autoencoder: Any, z: torch.Tensor | None) -> torch.Tensor | None:
    """The data of scaled latents ``z`` (CHUNK at a time); ``z`` itself without an autoencoder, and
    ``None`` for ``None`` (a process other than the first of a shared draw)."""
    if autoencoder is None or z is None:
        return z
    return torch.cat([from_latent(autoencoder, part) for part in z.split(CHUNK)])


def edit_of(
    autoencoder: Any,
    schedule: NoiseSchedule,
    data_shape: tuple[int, ...],
    n: int,
    init: Any,
    strength: float | None,
    mask: Any,
    steps: int | None = None,
) -> Edit | None:
    """:meth:`Edit.of` for a model that samples in ``autoencoder``'s latent space: ``init`` and ``mask`` are
    checked against the data (one-line errors in the data's terms), then encoded and pooled."""
    edit = Edit.of(schedule, data_shape, n, init, strength, mask, steps)
    if edit is None or autoencoder is None:
        return edit
    shape = space_shape(autoencoder, data_shape)
    z = encoded(autoencoder, edit.init)
    m = None
    if edit.mask is not None:
        pixel = (
            edit.mask.expand(edit.mask.shape[0], *edit.mask.shape[1:2], *data_shape[1:])
            if edit.mask.ndim == 4
            else edit.mask
        )
        m = latent_mask(pixel, shape)
    return Edit(init=z, strength=edit.strength, mask=m)


def shape_of(autoencoder: Any, data_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape samplers draw in: the latent shape with an autoencoder, else the data's."""
    return space_shape(autoencoder, data_shape)
