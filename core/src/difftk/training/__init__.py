"""The training engine: configuration, data order, run directory, checkpointed state, the loop,
and the whole job; and the training of noise-aware classifiers for classifier guidance."""
