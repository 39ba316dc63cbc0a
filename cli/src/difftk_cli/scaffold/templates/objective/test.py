def test_conforms():
    check_objective(difftk.create("objective", "my-plugin"))


def test_a_huge_gamma_is_l_simple():
    schedule = difftk.create("schedule", "linear")
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    oracle = GaussianOracle(schedule, mean=0.0, std=1.0, shape=(2,))
    mine = difftk.create("objective", "my-plugin", gamma=1e12).loss(oracle, schedule, x0, generator=torch.Generator().manual_seed(1))
    simple = difftk.create("objective", "simple").loss(oracle, schedule, x0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(mine, simple, rtol=1e-5)
