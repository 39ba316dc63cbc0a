def test_is_small_for_the_exact_model_and_grows_with_a_shift():
    from difftk.data.arrays import ArrayDataset
    from difftk.evaluation.context import EvalContext
    from difftk.model import Model

    schedule = difftk.create("schedule", "linear")
    oracle = GaussianOracle(schedule, mean=1.0, std=0.5, shape=(2,))
    oracle.num_classes = 0
    pipeline = difftk.compose(schedule=schedule, sampler="ddim")

    def value(shift):
        data = ArrayDataset((oracle.sample(2000, generator=torch.Generator().manual_seed(3)) + shift).float())
        context = EvalContext(model=Model(pipeline, oracle, data), data=data, steps=50)
        return difftk.create("metric", "my-plugin", n=1000).evaluate(context).value

    assert value(0.0) < 0.1 < value(1.0)
