"""Improved DDPM (Nichol & Dhariwal 2021) for difftk."""
