"""Measuring trained models: what a metric sees (:class:`~difftk.evaluation.context.EvalContext`)
and returns, and grids of measurements over checkpoints, samplers, steps and guidance scales."""
