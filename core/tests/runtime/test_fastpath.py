"""Speed settings change how the arithmetic runs, not what is computed: each against fp32 on the CPU
(bf16 autocast and channels-last run here; TF32 and CUDA graphs only on a GPU, not lent to CI)."""

import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.data.pipeline_data import load_dataset, size_to_data
from difftk.runtime.fastpath import autocast, prepare, resolve_precision, to_memory_format
from difftk.training.config import TrainConfig
from difftk.training.trainer import Trainer

TINY_UNET = dict(base_channels=8, norm_groups=4, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(14,),
                 dropout=0.0, num_classes=10)


def unet():
    """A tiny unet-attn with every weight random (its output layer starts at zero otherwise)."""
    torch.manual_seed(0)
    model = difftk.create("denoiser", "unet-attn", **TINY_UNET).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def batch(n=8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 28, 28, generator=g), torch.rand(n, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_auto_precision_is_bf16_on_cuda_and_fp32_elsewhere():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("tf32", torch.device("cpu")) == "tf32"


def test_channels_last_gives_the_fp32_output():
    x, t, y = batch()
    model = unet()
    with torch.no_grad():
        reference = model(x, t, cond=y)
        fast = prepare(model, channels_last=True)(to_memory_format(x, True), t, cond=y)
    assert fast.shape == reference.shape
    assert torch.allclose(fast, reference, atol=1e-5, rtol=1e-4)


def test_bf16_autocast_stays_within_bf16_precision_of_fp32():
    """bf16 keeps 8 bits of mantissa: outputs agree with fp32 to a few per cent of their scale."""
    x, t, y = batch()
    model = unet()
    with torch.no_grad():
        reference = model(x, t, cond=y)
        with autocast("bf16", torch.device("cpu")):
            low = model(x, t, cond=y)
    assert low.dtype == torch.bfloat16
    err = (low.float() - reference).abs().max() / reference.abs().max()
    assert 0 < err < 0.05, err


@pytest.mark.parametrize("settings", [dict(precision="bf16"), dict(channels_last=True),
                                      dict(precision="bf16", channels_last=True)])
def test_training_steps_with_fast_paths_track_fp32(register_plugin, settings):
    """Three steps of the same run in fp32 and with the setting: the losses agree to bf16 precision
    (or exactly up to summation order for channels-last) and the weights stay finite."""
    data = load_dataset("mnist")[0].subset(torch.arange(64))
    spec = difftk.compose(schedule="cosine", sampler="ddim", objective="simple",
                          denoiser={"name": "unet-attn", "options": TINY_UNET}).spec

    def losses(**cfg):
        torch.manual_seed(0)
        pipeline, _ = size_to_data(spec, data)
        trainer = Trainer(pipeline, data, TrainConfig(steps=3, batch_size=8, warmup=1, sample_every=0, **cfg))
        out = [trainer.train_step()[0] for _ in range(3)]
        assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
        return torch.tensor(out)

    reference, fast = losses(), losses(**settings)
    tol = 0.05 if settings.get("precision") == "bf16" else 1e-4
    assert torch.allclose(fast, reference, rtol=tol), (fast, reference)


def test_compile_is_applied_to_the_training_forward_and_keeps_the_denoiser_attributes(monkeypatch, register_plugin):
    """torch.compile itself is slow to start on a CPU test machine; the plumbing is what is checked:
    the trainer calls the compiled module, which still answers `prediction` for the objective."""
    assert register_plugin(toys, "toys")
    compiled_calls = []

    def fake_compile(module):
        def run(*args, **kwargs):
            compiled_calls.append(1)
            return module(*args, **kwargs)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    data = load_dataset("toy-points")[0].subset(torch.arange(16))
    spec = toys.toy_spec()
    pipeline, _ = size_to_data(spec, data)
    trainer = Trainer(pipeline, data, TrainConfig(steps=2, batch_size=4, compile=True, sample_every=0))
    assert trainer.net.prediction == "eps"
    trainer.train_step()
    assert compiled_calls
