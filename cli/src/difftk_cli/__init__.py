"""The difftk command line."""
