"""The Laplace noise schedule (Hang et al. 2024, "Improved Noise Schedule for Diffusion Training") for difftk."""
