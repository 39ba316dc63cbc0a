"""Sample-quality metrics for difftk."""
