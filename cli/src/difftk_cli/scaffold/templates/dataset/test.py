def test_points_lie_on_the_dark_squares_and_the_splits_differ():
    data = difftk.create("dataset", "my-plugin", n=2000).load("train")
    assert data.kind == "points" and data.shape == (2,) and len(data) == 2000
    x = data.batch(torch.arange(len(data)))[0]
    assert x.min() >= -2 and x.max() <= 2
    cells = torch.floor(x + 2).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    test = difftk.create("dataset", "my-plugin", n=2000).load("test").batch(torch.arange(2000))[0]
    assert not torch.equal(x, test)
