"""Classifier-free diffusion guidance (Ho & Salimans 2022) for difftk."""
