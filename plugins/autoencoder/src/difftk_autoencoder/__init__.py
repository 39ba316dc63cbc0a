"""difftk-autoencoder: the KL-regularised first stage of latent diffusion (Rombach et al. 2022).

``difftk compose ... --autoencoder kl --set autoencoder.weights=PATH`` puts a trained one in a pipeline;
``python -m difftk_autoencoder.train`` trains one (:mod:`difftk_autoencoder.train`); :func:`load` reads a
weights file with the architecture it records.
"""

from __future__ import annotations

from typing import Any

import difftk

from difftk_autoencoder.network import KLAutoencoder, KLAutoencoderConfig


def load(source: str) -> Any:
    """The ``kl`` autoencoder of a weights file, built with the architecture
    the file records, so no option needs repeating."""
    from difftk_autoencoder.weights import read

    _, meta = read(str(source))
    options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["config"].items()}
    return difftk.create("autoencoder", "kl", **options, weights=str(source))


__all__ = ["KLAutoencoder", "KLAutoencoderConfig", "load"]
