"""The ``kl`` autoencoder: the protocol's contract, its latent shape, its weights file (scale and shift
with it, one-line errors for a file that does not fit), and its training (the loss of Rombach et al.
2022 App. G without the adversarial and perceptual terms, the scale 1/σ̂, an exact resume)."""

import math

import attrs
import difftk
import difftk.testing.toys as toys
import pytest
import torch
from difftk.data.pipeline_data import load_dataset
from difftk.testing import check_autoencoder
from difftk_autoencoder import load
from difftk_autoencoder.train import AutoencoderTraining, autoencoder_loss, latent_statistics, train_autoencoder
from difftk_autoencoder.weights import read, save

SMALL = {"channels": 8, "channel_mult": (1, 2), "groups": 4, "z_channels": 2}


@pytest.fixture
def toy(register_plugin):
    assert register_plugin(toys, "toys")


@pytest.mark.parametrize(
    "options, shape, latent",
    [
        ({}, (1, 28, 28), (3, 7, 7)),
        ({"pad": 2}, (1, 28, 28), (3, 8, 8)),
        ({**SMALL, "in_channels": 3}, (3, 8, 8), (2, 4, 4)),
    ],
)
def test_the_kl_autoencoder_meets_the_protocol(options, shape, latent):
    torch.manual_seed(0)
    ae = difftk.create("autoencoder", "kl", **options)
    assert ae.latent_shape(shape) == latent
    check_autoencoder(ae, shape)


def test_data_it_cannot_take_is_one_line():
    ae = difftk.create("autoencoder", "kl")
    with pytest.raises(difftk.IncompatibleError, match="images are 30×30.*divisible by 4"):
        ae.latent_shape((1, 30, 30))
    with pytest.raises(difftk.IncompatibleError, match="set autoencoder.in_channels=3"):
        ae.latent_shape((3, 28, 28))
    with pytest.raises(difftk.OptionError, match="groups=5 does not divide"):
        difftk.create("autoencoder", "kl", groups=5)


def test_the_loss_is_reconstruction_plus_beta_kl():
    torch.manual_seed(0)
    ae = difftk.create("autoencoder", "kl", **SMALL).train()
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    total, rec, kl = autoencoder_loss(ae, x, 0.5, "l2", torch.Generator().manual_seed(1))
    q = ae.encode(x)
    x_hat = ae.decode(q.sample(torch.Generator().manual_seed(1)))
    torch.testing.assert_close(rec, (x - x_hat).pow(2).flatten(1).sum(1))
    torch.testing.assert_close(total, rec + 0.5 * kl)
    assert (kl >= 0).all()


def test_weights_round_trip_with_scale_and_shift(tmp_path):
    torch.manual_seed(1)
    ae = difftk.create("autoencoder", "kl", **SMALL)
    path = save(tmp_path / "ae.safetensors", ae, scale=0.7, shift=-0.2, training={"steps": 3})
    again = difftk.create("autoencoder", "kl", **SMALL, weights=str(path))
    assert (again.scale, again.shift) == (0.7, -0.2)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(again.encode(x).mean, ae.encode(x).mean, rtol=0, atol=0)
    loaded = load(str(path))  # the architecture from the file: no option repeated
    assert loaded.config.channel_mult == (1, 2) and loaded.scale == 0.7
    assert read(str(path))[1]["training"] == {"steps": 3}


def test_a_weights_file_that_does_not_fit_is_one_line(tmp_path):
    ae = difftk.create("autoencoder", "kl", **SMALL)
    path = save(tmp_path / "ae.safetensors", ae, scale=1.0, shift=0.0)
    with pytest.raises(difftk.OptionError, match="was trained with channels=8, not 32: set autoencoder.channels=8"):
        difftk.create("autoencoder", "kl", weights=str(path))
    with pytest.raises(difftk.DifftkError, match="no such autoencoder weights file"):
        difftk.create("autoencoder", "kl", weights=str(tmp_path / "missing.safetensors"))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:200])
    with pytest.raises(difftk.DifftkError, match="broken.safetensors"):
        difftk.create("autoencoder", "kl", **SMALL, weights=str(broken))


def test_training_lowers_the_loss_sets_the_scale_and_resumes_exactly(toy, tmp_path):
    dataset, _ = load_dataset("toy-images")
    config = AutoencoderTraining(steps=8, batch_size=8, lr=3e-3, scale_examples=64, checkpoint_every=4, log_every=4)
    logs = []
    record = train_autoencoder(dataset, SMALL, config, tmp_path / "whole.safetensors", report=logs.append)
    first, last = (float(line.split("reconstruction ")[1].split()[0]) for line in (logs[0], logs[-1]))
    assert last < first
    ae = load(str(tmp_path / "whole.safetensors"))
    mean, std = latent_statistics(ae, dataset, 64, config.seed + 3)
    assert math.isclose(ae.scale, 1 / std, rel_tol=1e-6) and ae.shift == 0.0 and record["latent_std"] == std
    half = attrs.evolve(config, steps=4)
    train_autoencoder(dataset, SMALL, half, tmp_path / "part.safetensors", report=logs.append)
    train_autoencoder(dataset, SMALL, config, tmp_path / "part.safetensors", resume=True, report=logs.append)
    a, b = read(str(tmp_path / "whole.safetensors"))[0], read(str(tmp_path / "part.safetensors"))[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    again = train_autoencoder(dataset, SMALL, config, tmp_path / "whole.safetensors", resume=True, report=logs.append)
    assert again == record  # a finished run resumed: nothing to do, the record as written


def test_psnr_is_ten_log_of_one_over_the_mse_on_unit_pixels():
    from difftk_autoencoder.measure import psnr

    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[0] += 0.2  # 0.1 on [0, 1] pixels: MSE 0.01, 20 dB
    y[1, 0, 0, 0] = 2.0  # clamped to 1: one pixel off by 0.5 on [0, 1], MSE 0.25/16
    torch.testing.assert_close(psnr(x, y), torch.tensor([20.0, 10 * math.log10(16 / 0.25)]))


def test_the_measure_command_writes_reconstructions_for_fid(toy, tmp_path, capsys):
    import numpy as np
    from difftk_autoencoder.measure import main

    path = save(tmp_path / "ae.safetensors", difftk.create("autoencoder", "kl", **SMALL), scale=1.0, shift=0.0)
    assert main([str(path), "--data", "toy-images", "-n", "5", "--npz", str(tmp_path / "r.npz")]) == 0
    assert "5 train examples of toy-images: PSNR" in capsys.readouterr().out
    with np.load(tmp_path / "r.npz") as f:
        assert f["arr_0"].shape == (5, 8, 8, 1) and f["arr_0"].dtype == np.uint8 and f["labels"].shape == (5,)


def test_a_weights_path_is_stored_absolute_so_a_checkpoint_finds_it_from_anywhere(tmp_path, monkeypatch):
    save(tmp_path / "ae.safetensors", difftk.create("autoencoder", "kl", **SMALL), scale=1.0, shift=0.0)
    monkeypatch.chdir(tmp_path)
    ae = difftk.create("autoencoder", "kl", **SMALL, weights="ae.safetensors")
    assert ae.config.weights == str(tmp_path.resolve() / "ae.safetensors")


def test_the_commands_replace_no_file_they_did_not_write_and_refuse_data_in_one_line(toy, tmp_path, capsys):
    from difftk_autoencoder.measure import main as measure
    from difftk_autoencoder.train import main as train

    precious = tmp_path / "notes.safetensors"
    precious.write_text("not an autoencoder")
    assert train(["--data", "toy-images", "--steps", "1", "--out", str(precious)]) == 2
    assert "exists: continue that run with --resume" in capsys.readouterr().err
    assert precious.read_text() == "not an autoencoder"

    path = save(tmp_path / "ae.safetensors", difftk.create("autoencoder", "kl", **SMALL), scale=1.0, shift=0.0)
    foreign = tmp_path / "mine.npz"
    foreign.write_bytes(b"not samples")
    assert measure([str(path), "--data", "toy-images", "-n", "2", "--npz", str(foreign)]) == 2
    assert "is not an npz of samples difftk wrote" in capsys.readouterr().err
    assert foreign.read_bytes() == b"not samples"
    assert measure([str(path), "--data", "toy-images", "-n", "2", "--npz", str(tmp_path / "r.npz")]) == 0
    assert measure([str(path), "--data", "toy-images", "-n", "2", "--npz", str(tmp_path / "r.npz")]) == 0  # its own
    capsys.readouterr()

    colour = save(tmp_path / "rgb.safetensors", difftk.create("autoencoder", "kl", **SMALL, in_channels=3), scale=1.0,
                  shift=0.0)
    assert measure([str(colour), "--data", "toy-images", "-n", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "takes images of 3 channel(s)" in err
