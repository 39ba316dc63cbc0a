"""Entry point of the autoencoder plugin: registers the ``kl`` autoencoder."""

import difftk

from difftk_autoencoder.network import KLAutoencoder


@difftk.hookimpl
def difftk_register_components(register):
    register.add_autoencoder("kl", KLAutoencoder)
