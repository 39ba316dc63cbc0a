def test_conforms_unconditional_and_conditional():
    check_denoiser(difftk.create("denoiser", "my-plugin", in_channels=1, image_size=8), (2, 1, 8, 8))
    check_denoiser(difftk.create("denoiser", "my-plugin", in_channels=3, image_size=16, num_classes=10), (2, 3, 16, 16))


def test_a_few_steps_on_one_batch_lower_the_loss():
    torch.manual_seed(0)
    net = difftk.create("denoiser", "my-plugin", in_channels=3, image_size=8, width=16)
    schedule, objective = difftk.create("schedule", "linear"), difftk.create("objective", "simple")
    x0 = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)

    def loss():
        return objective.loss(net, schedule, x0, generator=torch.Generator().manual_seed(2)).mean()

    first = float(loss())
    for _ in range(40):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss()) < 0.8 * first
