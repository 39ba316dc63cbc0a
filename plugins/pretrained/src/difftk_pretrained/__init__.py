"""Trained difftk models shipped inside the package, registered by name."""
