"""DDPM (Ho et al. 2020) for difftk."""
