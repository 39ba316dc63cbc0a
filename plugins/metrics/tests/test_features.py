"""Feature networks as a choice: which one each option names, where the Inception weights are found, one
line for every bad weights or statistics file, the held-out features cache, classifier:FILE features,
and the metrics on grey and colour images of any size."""

import io
import math
import os
import pickle

import difftk
import numpy as np
import pytest
import torch
from difftk.checkpoint.classifier_file import save_classifier
from difftk.data.arrays import ArrayDataset
from difftk.errors import CheckpointError, DifftkError, OptionError
from difftk.evaluation.context import EvalContext
from difftk.maths.stats import frechet_distance, moments
from difftk.pipeline.compose import create_component, spec_of
from difftk_metrics import features as F
from difftk_metrics.inception import InceptionV3, prepare

# --- which network ---------------------------------------------------------------------------------------------


def test_auto_is_mnist_for_digits_and_inception_for_any_other_shape(inception_file, monkeypatch):
    monkeypatch.setenv(F.INCEPTION_ENV, str(inception_file))
    assert isinstance(F.feature_network("auto", (1, 28, 28), "fid"), F.MnistFeatures)
    for shape in ((3, 32, 32), (1, 32, 32), (3, 28, 28), (3, 64, 64)):
        net = F.feature_network("auto", shape, "fid")
        assert isinstance(net, F.InceptionFeatures) and net.path == inception_file
    assert F.feature_network("inception", (1, 28, 28), "fid").path == inception_file  # chosen over the default
    assert F.feature_network(f"inception:{inception_file}", (1, 28, 28), "fid").path == inception_file
    with pytest.raises(OptionError, match=r"features='incepshun' is not a feature network \(choose from auto, mnist"):
        F.feature_network("incepshun", (3, 32, 32), "fid")
    with pytest.raises(OptionError, match=r"features=classifier:nope.safetensors: no such classifier file"):
        F.feature_network("classifier:nope.safetensors", (3, 32, 32), "fid")


def test_missing_inception_weights_are_one_line_saying_which_file_where_from_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv(F.INCEPTION_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(DifftkError) as err:
        F.feature_network("auto", (3, 32, 32), "fid")
    line = str(err.value)
    assert "\n" not in line and "pt_inception-2015-12-05-6726825d.pth" in line and F.INCEPTION_URL in line
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in line and "DIFFTK_INCEPTION_WEIGHTS" in line
    monkeypatch.setenv(F.INCEPTION_ENV, str(tmp_path / "absent.pth"))
    with pytest.raises(OptionError, match=r"\$DIFFTK_INCEPTION_WEIGHTS names .*absent.pth, which is not a file"):
        F.inception_weights()


def test_weights_are_found_where_pytorch_fid_and_torch_fidelity_keep_them(inception_file, tmp_path, monkeypatch):
    monkeypatch.delenv(F.INCEPTION_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name in reversed(F.INCEPTION_FILES):  # torch-fidelity's file alone, then pytorch-fid's beside it
        (tmp_path / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
        (tmp_path / "hub" / "checkpoints" / name).symlink_to(inception_file)
        assert F.inception_weights() == tmp_path / "hub" / "checkpoints" / name


class Hostile:
    """A pickle that would run a command when unpickled without weights_only."""

    def __reduce__(self):
        return (os.system, ("echo owned > owned.txt",))


def test_hostile_truncated_or_wrong_weight_files_are_one_line_errors(inception_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = InceptionV3()
    good = torch.load(inception_file, map_location="cpu", weights_only=True)
    (tmp_path / "truncated.pth").write_bytes(inception_file.read_bytes()[:100_000])
    (tmp_path / "hostile.pth").write_bytes(pickle.dumps({"fc.weight": Hostile()}))
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, tmp_path / "partial.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    torch.save({**good, "fc.weight": torch.zeros(1000, 2048)}, tmp_path / "shape.pth")
    torch.save({**good, "fc.bias": torch.full((1008,), float("nan"))}, tmp_path / "nan.pth")
    expected = {"truncated.pth": "cannot be read as the FID Inception-v3 weights",
                "hostile.pth": "cannot be read as the FID Inception-v3 weights",
                "partial.pth": r"does not hold the FID Inception-v3 weights \(missing Conv2d_1a_3x3",
                "list.pth": "is not a state dict of tensors",
                "shape.pth": r"fc.weight has shape \(1000, 2048\), the FID Inception-v3 needs \(1008, 2048\)",
                "nan.pth": "fc.bias holds non-finite or non-float values"}
    for name, message in expected.items():
        with pytest.raises(CheckpointError, match=message) as err:
            F.read_state_dict(tmp_path / name, net, "FID Inception-v3")
        assert "\n" not in str(err.value)
    assert not (tmp_path / "owned.txt").exists()


# --- images of any shape -----------------------------------------------------------------------------------------


def test_inception_input_is_pytorch_fids_for_grey_and_colour_images_of_any_size():
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(2, 1, 28, 28, generator=g) * 2 - 1
    x = prepare(grey)
    assert x.shape == (2, 3, 299, 299) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, prepare(grey.expand(-1, 3, -1, -1)))  # grey is RGB with three equal channels
    # quantised to 8 bits before resizing: images that round to the same bytes give the same input
    levels = torch.randint(0, 256, grey.shape, generator=g).float()
    jitter = 0.8 * (torch.rand(grey.shape, generator=g) - 0.5)  # under half an 8-bit step
    assert torch.equal(prepare(levels / 127.5 - 1), prepare((levels + jitter) / 127.5 - 1))
    levels = torch.arange(256.0).view(1, 1, 16, 16) / 127.5 - 1
    u8 = torch.arange(256.0).view(1, 1, 16, 16) / 255
    resized = torch.nn.functional.interpolate(u8.expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear",
                                              align_corners=False)
    assert torch.allclose(prepare(levels), 2 * resized - 1, atol=1e-6)
    on_grid = torch.rand(1, 3, 299, 299, generator=g) * 2 - 1  # 299 px: no resampling at all
    assert torch.allclose(prepare(on_grid), ((on_grid + 1) * 127.5).round() / 127.5 - 1, atol=1e-6)


def test_inception_refuses_images_that_are_neither_grey_nor_rgb(inception_file):
    with pytest.raises(DifftkError, match=r"features=inception reads grey or RGB images, but cmyk has examples of "
                                          r"shape 4×32×32"):
        F.InceptionFeatures(inception_file).check("fid", (4, 32, 32), "cmyk")
    with pytest.raises(DifftkError, match=r"with features=mnist judges MNIST digits \(1×28×28\), but this model has "
                                          r"examples of shape 3×32×32: give features=inception"):
        F.MnistFeatures().check("fid", (3, 32, 32), "this model")


class Given:
    """A stand-in model whose samples are the given images (unconditional)."""

    def __init__(self, images: torch.Tensor):
        self.images, self.data_shape, self.num_classes = images, tuple(images.shape[1:]), 0

    def sample(self, n, **_):
        return self.images[:n]


def colour_context(images: torch.Tensor, held_out: torch.Tensor) -> EvalContext:
    return EvalContext(model=Given(images), data=ArrayDataset(held_out, name="colours"))


@pytest.mark.slow  # 20 Inception-v3 passes: 8–45 s on 2 shared CPU cores, by their load
def test_every_image_metric_reads_colour_images_with_inception(inception_file, monkeypatch):
    """fid, kid, precision-recall and classifier-score on 3×32×32 images, by default through Inception."""
    monkeypatch.setenv(F.INCEPTION_ENV, str(inception_file))
    g = torch.Generator().manual_seed(1)
    held_out = torch.randint(0, 256, (10, 3, 32, 32), generator=g, dtype=torch.uint8)
    same = held_out.float() / 127.5 - 1
    context = colour_context(same, held_out)
    fid = difftk.create("metric", "fid", n=10, bootstrap=2).evaluate(context)
    assert fid.value < 1e-6 * float(torch.trace(moments(F.InceptionFeatures(inception_file).embed(same)[0])[1]))
    assert "Inception-v3 pool3, 2048 units" in fid.details["features"]
    assert "features cached in" in fid.details["reference"]
    kid = difftk.create("metric", "kid", n=10, subsets=4).evaluate(context)
    assert kid.value < 1e-9  # ≤ 0 for identical sets: k(x,x) + k(y,y) ≥ 2k(x,y) for a positive definite kernel
    pr = difftk.create("metric", "precision-recall", n=10).evaluate(context)
    assert pr.details["precision"] == 1.0 and pr.details["recall"] == 1.0  # the same images: inside each other's balls
    score = difftk.create("metric", "classifier-score", n=10, splits=2).evaluate(context)
    assert 1.0 <= score.value <= 1008 and "Inception-v3" in score.details["classifier"]


# --- reference statistics ---------------------------------------------------------------------------------------


def test_fid_against_a_reference_npz_equals_fid_against_the_data_it_came_from(measure_images, digits, mnist, tmp_path):
    _, _, test_x, _ = digits
    real, _ = F.held_out_features(mnist[1], F.MnistFeatures())
    mu, sigma = moments(real)
    np.savez(tmp_path / "stats.npz", mu=mu.numpy(), sigma=sigma.numpy())  # pytorch-fid's layout
    fake = test_x[:100].flip(-1)  # mirrored digits
    direct = measure_images("fid", fake, bootstrap=2)
    given = measure_images("fid", fake, bootstrap=2, reference=str(tmp_path / "stats.npz"))
    assert math.isclose(given.value, direct.value, rel_tol=1e-12) and "stats.npz" in given.details["reference"]


def test_bad_reference_files_are_one_line_errors(tmp_path):
    np.savez(tmp_path / "keys.npz", mean=np.zeros(4), cov=np.eye(4))
    np.savez(tmp_path / "dims.npz", mu=np.zeros(4), sigma=np.eye(4))
    np.savez(tmp_path / "nan.npz", mu=np.full(128, np.nan), sigma=np.eye(128))
    np.savez(tmp_path / "skew.npz", mu=np.zeros(128), sigma=np.triu(np.ones((128, 128))))
    np.savez(tmp_path / "objects.npz", mu=np.array([{"a": 1}], dtype=object), sigma=np.eye(128))
    (tmp_path / "text.npz").write_text("mu, sigma")
    buffer = io.BytesIO()
    np.savez(buffer, mu=np.zeros(128), sigma=np.eye(128))
    (tmp_path / "truncated.npz").write_bytes(buffer.getvalue()[:300])
    expected = {"absent.npz": (OptionError, "no such file"),
                "keys.npz": (CheckpointError, "holds no arrays 'mu' and 'sigma'"),
                "dims.npz": (CheckpointError, r"mu of shape \(4,\) and sigma of shape \(4, 4\), but the features have 128"),
                "nan.npz": (CheckpointError, "non-finite or non-float statistics"),
                "skew.npz": (CheckpointError, "sigma is not symmetric"),
                "objects.npz": (CheckpointError, "cannot be read as an .npz of arrays"),
                "text.npz": (CheckpointError, "cannot be read as an .npz of arrays"),
                "truncated.npz": (CheckpointError, "cannot be read as an .npz of arrays")}
    for name, (kind, message) in expected.items():
        with pytest.raises(kind, match=message) as err:
            F.read_reference(str(tmp_path / name), 128, "fid")
        assert "\n" not in str(err.value) and f"reference={tmp_path / name}" in str(err.value)


# --- classifier:FILE features and the cache ---------------------------------------------------------------------


@pytest.fixture
def classifier_file(tmp_path):
    """A noise-aware CNN classifier file for 3×16×16 images in 4 classes (random weights, written as
    `difftk train-classifier` writes them)."""
    torch.manual_seed(0)
    net = create_component("classifier", "noisy-cnn", {"in_channels": 3, "image_size": 16, "num_classes": 4})
    return save_classifier(tmp_path / "classifier.safetensors", net, spec_of("classifier", net), schedule=None,
                           dataset={"name": "colours"}, step=0)


def test_classifier_features_are_the_input_of_its_last_layer_at_t_0(classifier_file):
    from difftk.checkpoint.classifier_file import load_classifier

    net = F.feature_network(f"classifier:{classifier_file}", (3, 16, 16), "fid")
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    features, logits = net.embed(x)
    c = load_classifier(classifier_file)
    with torch.no_grad():  # the logits at t = 0 are the last linear layer of the features
        assert torch.allclose(logits, c(x, torch.zeros(5)), atol=1e-6)
        assert torch.allclose(c.head[-1](features.float()), logits, atol=1e-5)
    assert features.shape == (5, net.dims) == (5, 64) and net.description == "classifier classifier.safetensors, 64 units"
    with pytest.raises(DifftkError, match=r"reads 3×16×16 images, but this model has examples of shape 1×28×28"):
        net.check("fid", (1, 28, 28), "this model")


def test_held_out_features_are_cached_by_data_and_network_and_recomputed_when_the_cache_is_bad(classifier_file, tmp_path):
    data = ArrayDataset(torch.randint(0, 256, (12, 3, 16, 16), generator=torch.Generator().manual_seed(3),
                                      dtype=torch.uint8), name="colours")
    net = F.ClassifierFeatures(classifier_file)
    first, where = F.held_out_features(data, net)
    (path,) = (F.cache_dir() / "features").iterdir()
    assert path.name == f"colours-{F.data_digest(data)}-{net.key}.npz" and path.name in where
    with np.load(path) as f:  # pytorch-fid's layout beside the features: usable as fid's reference
        assert np.allclose(f["mu"], moments(first)[0].numpy()) and np.allclose(f["sigma"], moments(first)[1].numpy())
    np.savez(path, features=np.full((12, 64), 7.0, dtype=np.float32))
    assert torch.equal(F.held_out_features(data, net)[0], torch.full((12, 64), 7.0, dtype=torch.float64))  # read back
    path.write_bytes(b"garbage")
    again, _ = F.held_out_features(data, net)
    assert torch.equal(again, first)  # recomputed
    other = ArrayDataset(data.data.flip(0), name="colours")
    F.held_out_features(other, net)
    assert len(list((F.cache_dir() / "features").iterdir())) == 2  # another dataset, another file


def test_fid_with_classifier_features_ranks_noise_below_real_images(classifier_file, tmp_path):
    g = torch.Generator().manual_seed(4)
    held_out = torch.randint(100, 156, (40, 3, 16, 16), generator=g, dtype=torch.uint8)
    similar = torch.randint(100, 156, (40, 3, 16, 16), generator=g, dtype=torch.uint8).float() / 127.5 - 1
    noise = torch.rand(40, 3, 16, 16, generator=g) * 2 - 1
    spec = f"classifier:{classifier_file}"
    near = difftk.create("metric", "fid", n=40, bootstrap=2, features=spec).evaluate(colour_context(similar, held_out))
    far = difftk.create("metric", "fid", n=40, bootstrap=2, features=spec).evaluate(colour_context(noise, held_out))
    assert near.value < far.value and "classifier.safetensors" in near.details["features"]
    direct = frechet_distance(*moments(F.ClassifierFeatures(classifier_file).embed(similar)[0]),
                              *moments(F.ClassifierFeatures(classifier_file).embed(held_out.float() / 127.5 - 1)[0]))
    assert math.isclose(near.value, direct, rel_tol=1e-9)


def test_accuracy_of_colour_images_is_the_share_a_classifier_file_labels_as_asked(classifier_file):
    """accuracy with features=classifier:FILE is the share of images whose label the classifier's argmax at
    t = 0 agrees with — the same count done by hand; without a classifier, colour images are one line."""
    from difftk.checkpoint.classifier_file import load_classifier

    g = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (24, 3, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.arange(24) % 4
    context = EvalContext.from_images(ArrayDataset(images, labels=labels, num_classes=4, name="drawn"), None)
    result = difftk.create("metric", "accuracy", n=24, features=f"classifier:{classifier_file}").evaluate(context)
    with torch.no_grad():
        read = load_classifier(classifier_file)(images.float() / 127.5 - 1, torch.zeros(24)).argmax(1)
    expected = (read == labels).double()
    assert 0 < result.value < 1 and result.value == pytest.approx(float(expected.mean()), abs=1e-12)
    assert result.details["per class"] == {c: round(float(expected[labels == c].mean()), 4) for c in range(4)}
    assert "classifier.safetensors" in result.details["classifier"]
    for features, message in [("auto", r"needs a classifier of this model's 4 classes and has no classifier built "
                                       r"in, but this model makes 3×16×16 images: give "
                                       r"--set metric.features=classifier:FILE"),
                              ("inception", "has no classifier built in"),
                              ("mnist", r"reads MNIST digits \(1×28×28\) only, but this model makes 3×16×16"),
                              ("incepshun", r"features='incepshun' is not a feature network"),
                              ("auto:x", r"features='auto:x' is not a feature network"),
                              ("inception:nope.pth", r"features=inception:FILE names nope.pth, which is not a file")]:
        with pytest.raises(DifftkError, match=message) as err:
            difftk.create("metric", "accuracy", n=24, features=features).evaluate(context)
        assert "\n" not in str(err.value)
    few = difftk.create("metric", "accuracy", n=2, features=f"classifier:{classifier_file}").evaluate(context)
    assert set(few.details["per class"]) == {0, 1}  # the classes its 2 images hold: no NaN for the others
    five = ArrayDataset(images[:20], labels=torch.arange(20) % 5, num_classes=5, name="drawn")
    with pytest.raises(DifftkError, match=r"has 4 classes, but this model draws 5: give a classifier trained"):
        difftk.create("metric", "accuracy", n=20, features=f"classifier:{classifier_file}").evaluate(
            EvalContext.from_images(five, None))


def test_accuracy_of_digits_is_read_by_the_mnist_classifier_whatever_network_fid_reads_them_with(digits, tmp_path,
                                                                                                  monkeypatch):
    """With features=inception (FID and KID in Inception's features) digits are still labelled by the MNIST
    classifier — without the Inception weights even being looked for."""
    _, _, test_x, test_y = digits
    monkeypatch.delenv(F.INCEPTION_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    images = ((test_x[:40] + 1) * 127.5).round().to(torch.uint8)
    context = EvalContext.from_images(ArrayDataset(images, labels=test_y[:40], num_classes=10, name="digits"), None)
    results = [difftk.create("metric", "accuracy", n=40, features=f).evaluate(context).value
               for f in ("auto", "mnist", "inception")]
    assert results[0] == results[1] == results[2] > 0.9


def test_held_out_features_of_an_image_folder_are_keyed_by_the_pixels_the_metrics_see(classifier_file, tmp_path):
    """A held-out split read from files (not held in memory) is digested by its decoded pixels: the same
    folder resized another way is another key, and its features equal those of the same pixels in memory."""
    from PIL import Image

    g = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "pics" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(g.integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(tmp_path / "pics" / c / f"{i}.png")
    load = lambda resize: difftk.create("dataset", "image-folder", path=str(tmp_path / "pics"), image_size=16,  # noqa: E731
                                        resize=resize).load("train")
    cropped, stretched = load("crop"), load("stretch")
    assert F.data_digest(cropped) == F.data_digest(load("crop")) != F.data_digest(stretched)
    pixels, labels = cropped.read(torch.arange(len(cropped)))
    in_memory = ArrayDataset(pixels, labels=labels, num_classes=2, name="pics")
    net = F.ClassifierFeatures(classifier_file)
    from_files, where = F.held_out_features(cropped, net)
    assert torch.allclose(from_files, F.held_out_features(in_memory, net)[0]) and "6 images" in where
    assert torch.equal(F.held_out_features(cropped, net)[0], from_files)  # read back from the cache
