"""DPM-Solver++ (Lu et al. 2022, NeurIPS; Lu et al. 2022b) for difftk."""
