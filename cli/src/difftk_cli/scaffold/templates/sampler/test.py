def test_conforms():
    check_sampler(difftk.create("sampler", "my-plugin"))


def test_gaussian_data_comes_out_right():
    schedule = difftk.create("schedule", "linear")
    oracle = GaussianOracle(schedule, mean=1.0, std=0.5, shape=(2,))
    x_T = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = difftk.create("sampler", "my-plugin").sample(oracle, schedule, x_T, steps=100)
    assert torch.allclose(x.mean(0), torch.full((2,), 1.0, dtype=torch.float64), atol=0.03)
    assert torch.allclose(x.std(0), torch.full((2,), 0.5, dtype=torch.float64), atol=0.03)
