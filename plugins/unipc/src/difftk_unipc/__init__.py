"""UniPC (Zhao et al. 2023) for difftk."""
