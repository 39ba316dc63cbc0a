"""High-order samplers for difftk: DPM-Solver++(2M) (Lu et al. 2022) and Heun (Karras et al. 2022)."""
