"""DDIM (Song et al. 2020) for difftk."""
