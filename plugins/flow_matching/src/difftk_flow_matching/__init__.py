"""Flow matching for difftk: schedule ``flow``, objective ``flow-matching``, sampler ``flow-euler``."""
