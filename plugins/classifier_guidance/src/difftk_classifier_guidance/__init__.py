"""Classifier guidance (Dhariwal & Nichol 2021) for difftk."""
