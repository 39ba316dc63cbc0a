def test_conforms():
    check_schedule(difftk.create("schedule", "my-plugin"))


def test_log_snr_is_linear_in_t():
    s = difftk.create("schedule", "my-plugin")
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    ab = s.alpha_bar(t)
    lam = torch.log(ab) - torch.log1p(-ab)
    assert torch.allclose(lam, 10.0 - 20.0 * t, atol=1e-9)
