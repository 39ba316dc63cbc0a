"""The shared maths of diffusion models, written once: schedules and their time grids, the forward
process and its posteriors, the conversions between ε, x₀, v and the score, the variational
bound's terms, ODE solvers and statistics. Plain functions of tensors; no plugin system here."""
