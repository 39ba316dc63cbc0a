"""How far the samples' per-dimension mean and standard deviation are from the held-out data's."""

import attrs
import torch
from difftk.errors import DifftkError
from difftk.evaluation.context import EvalContext, MetricResult
from difftk.options import option


@attrs.frozen
class MyPluginMetric:
    """‖mean(samples) − mean(data)‖ + ‖std(samples) − std(data)‖ over dimensions (RMS), in data units."""

    n: int = option(500, help="samples generated", ge=2)

    def evaluate(self, context: EvalContext) -> MetricResult:
        if context.data is None:
            raise DifftkError("metric needs the held-out data, but the checkpoint's dataset cannot be loaded")
        real = context.data.batch(torch.arange(len(context.data)))[0].flatten(1).double()
        fake = context.samples(self.n, context.balanced_labels(self.n)).flatten(1).double()
        rms = lambda v: float(v.square().mean().sqrt())  # noqa: E731
        value = rms(fake.mean(0) - real.mean(0)) + rms(fake.std(0) - real.std(0))
        return MetricResult(name="moment-error", value=value, spread=float("nan"), n=self.n, spread_kind="none")
