def oracle():
    schedule = difftk.create("schedule", "linear")
    return schedule, GaussianMixtureOracle(schedule, torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), stds=0.3)


def test_conforms():
    schedule, model = oracle()
    check_guidance(difftk.create("guidance", "my-plugin"), schedule, denoiser=model)


def test_guides_inside_the_interval_only():
    schedule, model = oracle()
    guided = difftk.create("guidance", "my-plugin", scale=2.0, t_low=0.3, t_high=0.6).wrap(model, schedule)
    x, y = torch.randn(4, 2, dtype=torch.float64), torch.tensor([0, 1, 0, 1])
    null = torch.full_like(y, 2)
    for t_value, inside in ((0.1, False), (0.45, True), (0.9, False)):
        t = torch.full((4,), t_value, dtype=torch.float64)
        c, u = model(x, t, cond=y), model(x, t, cond=null)
        expected = c + 2.0 * (c - u) if inside else c
        torch.testing.assert_close(guided(x, t, cond=y), expected)
