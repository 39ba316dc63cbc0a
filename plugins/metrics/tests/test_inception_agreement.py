"""difftk's Inception features, FID and Inception Score against pytorch-fid's and torch-fidelity's, with the
same weights file (the real one when this machine has it, else random weights), on the same images.

Neither peer downloads anything: pytorch-fid's weights loader is handed the state dict of the file,
torch-fidelity is given the file's path.
"""

import math

import numpy as np
import pytest
import torch
from difftk.maths.stats import frechet_distance, moments
from difftk_metrics.classifier_score import split_scores
from difftk_metrics.features import InceptionFeatures, inception_net
from hypothesis import given, settings
from hypothesis import strategies as st
from inception_peers import peers
from PIL import Image


@pytest.fixture(scope="module")
def pytorch_fid_model(inception_file):
    """pytorch-fid's InceptionV3 (pool3 block), built with the weights of ``inception_file``; while the
    module's tests run, every InceptionV3 pytorch-fid builds gets them (its loader is patched)."""
    pytorch_fid, _ = peers()
    state = torch.load(inception_file, map_location="cpu", weights_only=True)
    patch = pytest.MonkeyPatch()
    patch.setattr(pytorch_fid.inception, "load_state_dict_from_url", lambda *args, **kwargs: state)
    yield pytorch_fid.inception.InceptionV3([3]).eval()
    patch.undo()


def images(n: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """n smooth random images in [−1, 1] on the 8-bit grid (blurred noise: resizing them means something)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.rand(n, channels, size + 4, size + 4, generator=g), 5, stride=1)
    return ((x - x.amin()) / (x.amax() - x.amin()) * 255).round() / 127.5 - 1


def test_features_equal_pytorch_fids_inception_to_1e_5(inception_file, pytorch_fid_model):
    x = images(3, 3, 32, seed=0)
    ours, _ = InceptionFeatures(inception_file).embed(x)
    with torch.no_grad():  # pytorch-fid takes [0, 1] images and resizes them itself
        theirs = pytorch_fid_model((x + 1) / 2)[0].flatten(1).double()
    assert ours.shape == theirs.shape == (3, 2048)
    assert (ours - theirs).abs().max() <= 1e-5 * max(1.0, float(theirs.abs().max()))
    assert float(ours.std()) > 1e-3  # not a degenerate network


def test_the_network_equals_torch_fidelitys_on_its_own_file_layout(inception_file):
    """torch-fidelity reads uint8 images and resizes like TensorFlow 1; at 299 px there is nothing to
    resize, so the networks see the same input (x − 128)/128 and must give the same pool3 and logits."""
    _, torch_fidelity = peers()
    extractor = torch_fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(inception_file))
    u8 = ((images(2, 3, 299, seed=1) + 1) * 127.5).round().to(torch.uint8)
    with torch.no_grad():
        pool3, logits = extractor(u8)
        ours_pool3, ours_logits = inception_net(inception_file, inception_file.stat().st_mtime_ns)((u8.float() - 128) / 128)
    assert (ours_pool3 - pool3).abs().max() <= 1e-5 * max(1.0, float(pool3.abs().max()))
    assert (ours_logits - logits).abs().max() <= 1e-5 * max(1.0, float(logits.abs().max()))


def save_pngs(x: torch.Tensor, folder) -> None:
    folder.mkdir()
    u8 = ((x + 1) * 127.5).round().to(torch.uint8)
    for i, image in enumerate(u8):
        array = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()
        Image.fromarray(array, mode="L" if image.shape[0] == 1 else "RGB").save(folder / f"{i}.png")


@pytest.mark.slow  # pytorch-fid's scipy sqrtm of a singular 2048×2048 product: 1–2 min on 2 shared CPU cores
def test_fid_equals_pytorch_fids_pipeline_on_the_same_images(inception_file, pytorch_fid_model, tmp_path):
    """Grey 28×28 images against RGB 32×32 ones, from PNG files for pytorch-fid: the quantisation, the grey
    to RGB copy, the resize and the statistics all agree (to 1e-4 relative)."""
    pytorch_fid, _ = peers()
    grey, colour = images(6, 1, 28, seed=2), images(5, 3, 32, seed=3)
    save_pngs(grey, tmp_path / "grey")
    save_pngs(colour, tmp_path / "colour")
    net = InceptionFeatures(inception_file)
    ours = frechet_distance(*moments(net.embed(grey)[0]), *moments(net.embed(colour)[0]))
    theirs = pytorch_fid.fid_score.calculate_fid_given_paths(  # its loader patched by pytorch_fid_model
        [str(tmp_path / "grey"), str(tmp_path / "colour")], batch_size=6, device="cpu", dims=2048, num_workers=0)
    assert math.isclose(ours, theirs, rel_tol=1e-4), (ours, theirs)


@settings(max_examples=20, deadline=5000)
@given(st.integers(2, 200), st.integers(1, 10), st.floats(0.1, 20.0), st.integers(0, 2**31 - 1))
def test_split_scores_are_torch_fidelitys_inception_score(n, splits, scale, seed):
    """classifier-score's splits and score are torch-fidelity's isc_features_to_metric on the same logits
    (unshuffled): the mean of the splits' scores, and their population standard deviation."""
    _, torch_fidelity = peers()
    splits = min(splits, n // 2)
    logits = scale * torch.randn(n, 1008, generator=torch.Generator().manual_seed(seed))
    ours = split_scores(logits, splits)
    theirs = torch_fidelity.metric_isc.isc_features_to_metric(logits, splits=splits, shuffle=False)
    assert math.isclose(float(ours.mean()), theirs["inception_score_mean"], rel_tol=1e-12)
    assert math.isclose(float(np.std(ours.numpy())), theirs["inception_score_std"], rel_tol=1e-9, abs_tol=1e-12)


def test_inception_score_of_the_networks_logits_is_torch_fidelitys(inception_file):
    x = images(4, 3, 32, seed=4)
    _, logits = InceptionFeatures(inception_file).embed(x)
    _, torch_fidelity = peers()
    theirs = torch_fidelity.metric_isc.isc_features_to_metric(logits, splits=2, shuffle=False)
    assert math.isclose(float(split_scores(logits, 2).mean()), theirs["inception_score_mean"], rel_tol=1e-12)
