"""Autoguidance (Karras et al. 2024) for difftk."""
