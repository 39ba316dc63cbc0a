"""Shipped checkpoints (`Registrar.add_checkpoint`, difftk-pretrained), `difftk export`, and
`difftk sample NAME --pipeline FILE`."""

import json

import difftk
import pytest
import torch
from difftk.checkpoint.classifier_file import load_classifier, read_classifier_metadata
from difftk.checkpoint.files import SAMPLING_CONTENTS, read_checkpoint, resolve_path
from difftk.components import plugins
from difftk.errors import UnknownComponentError
from difftk.model import load
from difftk.sampling.draw import class_labels
from difftk_cli.testing import one_line_error, run
from difftk_metrics.network import embed
from difftk_pretrained.plugin import EMOJI_JUDGE
from PIL import Image

MAX_SHIPPED_BYTES = 20 * 1000 * 1000
EMOJI_STEPS = 2600  # scripts/train_emoji.sh: one run of 2,600 steps


# --- the shipped models ------------------------------------------------------------------------------


def shipped_class_conditional(name: str, dataset: str = "mnist", num_classes: int = 10):
    """The checkpoint shipped as ``name``, after what every shipped model must be: registered by this
    plugin, small, EMA weights only, a cfg-trained model conditional on the classes of ``dataset``."""
    shipped = plugins.registry().checkpoint(name)
    assert shipped.plugin == "pretrained" and shipped.path.stat().st_size <= MAX_SHIPPED_BYTES
    ckpt = read_checkpoint(name)
    assert ckpt.metadata["contents"] == SAMPLING_CONTENTS and not ckpt.section("model") and not ckpt.section("optim")
    spec = ckpt.spec
    assert spec["guidance"].name == "cfg" and spec["guidance"].options_dict["p_uncond"] > 0
    assert spec["denoiser"].options_dict["num_classes"] == num_classes and ckpt.dataset["name"] == dataset
    return ckpt, spec


def test_mnist_cfg_is_shipped_small_and_says_how_it_was_made():
    ckpt, spec = shipped_class_conditional("mnist-cfg")
    assert (spec["schedule"].name, spec["denoiser"].name, spec["objective"].name) == ("cosine", "unet-attn", "simple")
    assert ckpt.train_config["steps"] >= ckpt.step > 0


def test_mnist_flow_is_shipped_small_and_is_the_time_to_quality_recipe():
    """scripts/train_mnist_flow.sh's model: the recipe of benchmarks/time_to_quality.py with a
    uniform share in the τ draws, EMA weights only, and its learning-rate schedule recorded with it."""
    ckpt, spec = shipped_class_conditional("mnist-flow")
    assert (spec["schedule"].name, spec["denoiser"].name, spec["objective"].name) == ("flow", "unet-attn", "flow-matching")
    assert spec["denoiser"].options_dict["prediction"] == "flow" and spec["denoiser"].options_dict["channel_mult"] == [1, 4, 6]
    assert spec["objective"].options_dict["loc"] == 0.5 and spec["objective"].options_dict["uniform_fraction"] == 0.3
    assert ckpt.step == ckpt.train_config["steps"] == 1868 and ckpt.train_config["lr_schedule"] == "cosine"


def test_mnist_flow_weak_is_mnist_flows_recipe_smaller_and_shorter():
    """scripts/train_mnist_flow_weak.sh's model, the autoguidance companion of mnist-flow (Karras et al.
    2024): the same schedule, objective, prediction and data, a tenth of the parameters, a third of the steps."""
    ckpt, spec = shipped_class_conditional("mnist-flow-weak")
    _, strong = shipped_class_conditional("mnist-flow")
    for kind in ("schedule", "objective"):
        assert spec[kind] == strong[kind]
    weak, full = spec["denoiser"].options_dict, strong["denoiser"].options_dict
    assert weak["prediction"] == full["prediction"] == "flow" and weak["base_channels"] == 8 and weak["channel_mult"] == [1, 2, 4]
    assert ckpt.step == ckpt.train_config["steps"] == 600
    assert sum(p.numel() for p in load("mnist-flow-weak").denoiser.parameters()) * 9 < sum(
        p.numel() for p in load("mnist-flow").denoiser.parameters())


def test_mnist_flow_2step_is_mnist_flow_reflowed_at_its_samplers_times():
    """scripts/distill_mnist_flow_2step.sh's student: mnist-flow's path and network, trained by reflow on
    mnist-flow's own UniPC-8 solutions, its last stage at t = 1 and 0.2 (reflow's `times`) with `rollout` (t = 0.2
    asked where its own first step arrives), and sampled by flow-euler at shift 1/3, whose 2 steps are t = 1 and
    0.25: near the trained times, and measured better than them (docs/fast_sampling.md, "The 2-step grid")."""
    ckpt, spec = shipped_class_conditional("mnist-flow-2step")
    _, teacher = shipped_class_conditional("mnist-flow")
    assert spec["schedule"] == teacher["schedule"] and spec["denoiser"].name == teacher["denoiser"].name
    ours, theirs = spec["denoiser"].options_dict, teacher["denoiser"].options_dict
    assert {k: v for k, v in ours.items() if k != "dropout"} == {k: v for k, v in theirs.items() if k != "dropout"}
    objective = spec["objective"].options_dict
    assert spec["objective"].name == "reflow" and objective["teacher"] == "mnist-flow"
    assert (objective["teacher_sampler"], objective["teacher_steps"]) == ("unipc", 8)
    assert list(objective["times"]) == [1.0, 0.2] and objective["times_share"] == 0.6 and objective["rollout"] is True
    assert spec["sampler"].name == "flow-euler" and spec["sampler"].options_dict["shift"] == pytest.approx(1 / 3, abs=1e-6)
    assert spec["guidance"].options_dict["scale"] == 0.0  # unguided by default, as measured: 2 evaluations a sample
    assert ckpt.step == ckpt.train_config["steps"] == 600
    model = load("mnist-flow-2step")
    assert model.sampler().time_grid(model.pipeline.schedule, 2).tolist() == pytest.approx([1.0, 0.25], abs=1e-6)


def test_mnist_flow_2step_draws_digits_in_range_at_two_steps():
    """Issue 37's bar for the few-step sampler on the shipped student: its own 2 steps (the pipeline's flow-euler,
    t = 1 then 0.25), clipping off, unguided, leave at most 2 % of pixels beyond ±1.05 over 500 samples on noise
    it was not trained on (seed 1: 1.46 %; 1.44, 1.55, 1.51 % over 1,000 on seeds 1, 2, 3, docs/fast_sampling.md),
    and the digit asked for is drawn (0.966)."""
    model = load("mnist-flow-2step")
    labels = class_labels(500, model.num_classes)
    x = model.sample(500, steps=2, guidance=False, labels=labels, seed=1, batch_size=250)  # one batch of 500: 2× slower
    assert torch.isfinite(x).all() and float((x.abs() > 1.05).double().mean()) <= 0.02
    _, logits = embed(x.clamp(-1, 1))
    assert float((logits.argmax(1) == labels).double().mean()) >= 0.95


@pytest.mark.parametrize("name", ["mnist-cfg", "mnist-flow"])
def test_a_shipped_model_draws_the_requested_digit_shapes(name):
    """Ten cfg-guided DDIM steps, x̂₀ not clipped, give a bright digit-sized blob on a dark
    ground, with the same seed the same images, and different labels different images."""
    model = load(name)
    draw = lambda label: model.sample(2, sampler="ddim", steps=10, guidance="cfg", scale=3.0,  # noqa: E731
                                      labels=[label, label], seed=7)
    ones, ones_again, zeros = draw(1), draw(1), draw(0)
    assert ones.shape == (2, 1, 28, 28) and torch.equal(ones, ones_again)
    assert (ones > 0).float().mean() < 0.35  # mostly background: a stroke, not noise
    assert (zeros > 0).float().mean() > (ones > 0).float().mean()  # a 0 has more ink than a 1
    border = torch.cat([ones[..., :3, :].flatten(), ones[..., -3:, :].flatten()])
    assert border.mean() < -0.9  # the frame of an MNIST digit is empty


def test_emoji_flow_is_shipped_small_and_is_the_colour_recipe():
    """scripts/train_emoji.sh's model: flow matching at 3×32×32 on the shipped emoji, mirrored at random."""
    ckpt, spec = shipped_class_conditional("emoji-flow", dataset="emoji", num_classes=5)
    assert (spec["schedule"].name, spec["denoiser"].name, spec["objective"].name) == ("flow", "unet-attn", "flow-matching")
    options = spec["denoiser"].options_dict
    assert (options["in_channels"], options["image_size"], options["attention_resolutions"]) == (3, 32, [8])
    assert (options["base_channels"], options["channel_mult"]) == (32, [1, 2, 3])
    assert spec["objective"].options_dict["uniform_fraction"] == 0.3 and spec["objective"].options_dict["loc"] == 0.0
    assert ckpt.dataset["options"] == {"flip": True}
    assert ckpt.step == ckpt.train_config["steps"] == EMOJI_STEPS and ckpt.train_config["lr_schedule"] == "cosine"


def test_the_emoji_judge_is_a_classifier_of_the_emoji_classes_and_reads_real_emoji():
    """The judge shipped beside emoji-flow: trained on the train split only, and right on most of
    the held-out test split, clean (t = 0): 86.3 % (the largest class alone is 45.7 %), each class
    at least 0.72 (docs/pretrained.md)."""
    metadata, _ = read_classifier_metadata(EMOJI_JUDGE)
    assert metadata["dataset"]["name"] == "emoji" and EMOJI_JUDGE.stat().st_size <= 1_000_000
    judge = load_classifier(EMOJI_JUDGE)
    test = difftk.create("dataset", "emoji").load("test")
    x, y = test.batch(torch.arange(len(test)))
    right = judge(x, torch.zeros(len(x))).argmax(1) == y
    assert float(right.double().mean()) >= 0.85
    for c in range(test.num_classes):  # every class, not only the largest
        assert float(right[y == c].double().mean()) >= 0.7, test.class_names[c]


@pytest.fixture(scope="module")
def emoji_samples():
    """20 unguided class-conditional emoji-flow samples, 4 of each class, DDIM at 20 steps, x̂₀ not clipped."""
    model = load("emoji-flow")
    labels = class_labels(20, model.num_classes)
    x = model.sample(20, sampler="ddim", steps=20, guidance=False, labels=labels, seed=0)
    assert x.shape == (20, 3, 32, 32) and torch.isfinite(x).all()
    return x, labels


def test_unguided_emoji_flow_samples_stay_in_range(emoji_samples):
    """The cheap form of the card's range bar (docs/pretrained.md: 0.39 % at n = 500, every sampler
    at most 1.26 % at n = 100): at most 2 % of pixels beyond ±1.05."""
    x, _ = emoji_samples
    assert float((x.abs() > 1.05).double().mean()) <= 0.02


@pytest.mark.xfail(strict=True, reason="emoji-flow's samples read 0.766 ± 0.019 at n = 500 against the bar's 0.8 "
                                       "(0.762 trained with the classes balanced; docs/pretrained.md); a model that meets it fails "
                                       "here until the mark goes")
def test_the_judge_reads_unguided_emoji_flow_samples_as_their_class(emoji_samples):
    """The cheap form of the card's accuracy bar: at least 0.8 of the samples read by the judge as
    the class asked for."""
    x, labels = emoji_samples
    read = load_classifier(EMOJI_JUDGE)(x.clamp(-1, 1), torch.zeros(20)).argmax(1)
    assert float((read == labels).double().mean()) >= 0.8


def test_the_judge_reads_unguided_emoji_latent_samples_as_their_class():
    """emoji-latent, the latent colour model on emoji-kl, meets the accuracy bar: 0.838 ± 0.016 read right at
    n = 500 (DDIM 25 steps; docs/pretrained.md). Cheap form: 100 unguided DDIM samples (5 s), at least 0.8 read
    as the class asked for and at most 2 % of pixels beyond ±1.05."""
    model = load("emoji-latent")
    assert model.pipeline.autoencoder is not None and model.checkpoint.dataset["name"] == "emoji"
    labels = class_labels(100, model.num_classes)
    x = model.sample(100, sampler="ddim", steps=20, guidance=False, labels=labels, seed=0)
    assert x.shape == (100, 3, 32, 32) and float((x.abs() > 1.05).double().mean()) <= 0.02
    read = load_classifier(EMOJI_JUDGE)(x.clamp(-1, 1), torch.zeros(100)).argmax(1)
    assert float((read == labels).double().mean()) >= 0.8


def test_metrics_read_colour_emoji_through_the_shipped_judge_by_name(tmp_path):
    """features=classifier:emoji-judge names the shipped judge (registered as classifier weights): evaluate
    scores emoji-latent's samples with it — accuracy by its labels, KID in its features — and a misspelt
    name is one line listing the shipped classifiers."""
    result = run("evaluate", "emoji-latent", "--metric", "accuracy", "--metric", "kid", "-n", 40, "--steps", 10,
                 "--scale", 0, "--set", "metric.features=classifier:emoji-judge", "--set", "metric.subsets=4",
                 "--json", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    accuracy, kid = json.loads((tmp_path / "m.json").read_text())["results"]
    assert accuracy["value"] >= 0.6 and "emoji-judge.safetensors" in accuracy["details"]["classifier"]
    assert "emoji-judge.safetensors" in kid["details"]["features"] and "emoji held-out" in kid["details"]["reference"]
    line = one_line_error(run("evaluate", "emoji-latent", "--metric", "accuracy", "-n", 10,
                              "--set", "metric.features=classifier:emoji-jugde"))
    assert "features=classifier:emoji-jugde: no such classifier file, nor a shipped classifier of that name " \
           "(shipped: emoji-judge;" in line


def test_sample_by_name_with_a_composed_pipeline(tmp_path):
    assert run("compose", "--schedule", "cosine", "--sampler", "ancestral", "--guidance", "cfg",
               "--set", "guidance.scale=1.5", "-o", tmp_path / "p.toml").exit_code == 0
    result = run("sample", "mnist-cfg", "--pipeline", tmp_path / "p.toml", "-n", 4, "--steps", 2,
                 "-o", tmp_path / "d.png")
    assert result.exit_code == 0, result.output
    assert "sampler ancestral" in result.stdout and "guidance scale=1.5" in result.stdout
    assert Image.open(tmp_path / "d.png").size[0] > 2 * 28


def test_a_pipeline_with_another_schedule_is_refused_in_one_line(tmp_path):
    assert run("compose", "--schedule", "linear", "--sampler", "ddim", "-o", tmp_path / "p.toml").exit_code == 0
    line = one_line_error(run("sample", "mnist-cfg", "--pipeline", tmp_path / "p.toml", "-o", tmp_path / "d.png"))
    assert "schedule 'linear'" in line and "trained with 'cosine'" in line and "--schedule cosine" in line


def test_a_misspelt_model_name_gets_a_did_you_mean(tmp_path):
    line = one_line_error(run("sample", "mnist-cgf", "-o", tmp_path / "d.png"))
    assert "did you mean 'mnist-cfg'" in line and "shipped: emoji-flow, emoji-latent, mnist-cfg, mnist-flow" in line
    with pytest.raises(UnknownComponentError):
        resolve_path("nothing-like-it")


def test_plugins_lists_the_shipped_model():
    result = run("plugins", "--json")
    assert '"mnist-cfg"' in result.stdout and '"checkpoint"' in result.stdout


# --- registering checkpoints ------------------------------------------------------------------------


class Shipper:
    def __init__(self, path, name="tiny-model"):
        self.path, self.name = path, name

    @difftk.hookimpl
    def difftk_register_components(self, register):
        register.add_checkpoint(self.name, self.path, "a test model")


def test_a_checkpoint_file_that_is_missing_skips_the_plugin(difftk_host, tmp_path):
    with pytest.warns(plugins.PluginWarning, match='plugin "shipper" skipped: registration failed: .*is not a file'):
        assert not difftk_host.register(Shipper(tmp_path / "absent.safetensors"), name="shipper")
    assert "tiny-model" not in difftk_host.registry.checkpoints


def test_two_plugins_shipping_one_name_both_lose_it(difftk_host, tmp_path):
    f = tmp_path / "m.safetensors"
    f.write_bytes(b"x")
    assert difftk_host.register(Shipper(f), name="a") and difftk_host.register(Shipper(f), name="b")
    assert "tiny-model" not in difftk_host.registry.checkpoints
    assert difftk_host.registry.conflicts[("checkpoint", "tiny-model")] == ["a", "b"]


# --- difftk export ------------------------------------------------------------------------------------


@pytest.fixture
def tiny_run(toy_pipeline):
    tmp_path = toy_pipeline
    result = run("train", "p.toml", "--data", "toy-images", "--steps", 3, "--out", "run", "--sample-every", 0)
    assert result.exit_code == 0, result.output
    return tmp_path


def test_export_keeps_what_sampling_needs_and_samples_the_same(tiny_run):
    result = run("export", "run", "-o", "small.safetensors")
    assert result.exit_code == 0, result.output
    assert "EMA weights of step 3" in result.stdout
    full, small = read_checkpoint("run"), read_checkpoint("small.safetensors")
    assert small.step == full.step and small.spec == full.spec and small.dataset == full.dataset
    assert set(small.tensors) == {k for k in full.tensors if k.startswith("ema/")}
    assert (tiny_run / "small.safetensors").stat().st_size < (tiny_run / "run" / "checkpoint.safetensors").stat().st_size
    for a, b in (("run", "a.png"), ("small.safetensors", "b.png")):
        assert run("sample", a, "-n", 4, "--steps", 3, "-o", b).exit_code == 0
    assert (tiny_run / "a.png").read_bytes() == (tiny_run / "b.png").read_bytes()


def test_an_exported_checkpoint_cannot_be_resumed(tiny_run):
    assert run("export", "run", "-o", "small.safetensors").exit_code == 0
    (tiny_run / "run" / "checkpoint.safetensors").write_bytes((tiny_run / "small.safetensors").read_bytes())
    line = one_line_error(run("train", "p.toml", "--data", "toy-images", "--steps", 5, "--out", "run", "--resume"))
    assert "exported for sampling" in line and "cannot be resumed" in line


def test_mnist_latent_is_shipped_small_and_names_its_first_stage_by_name():
    """The latent model's spec names the shipped first stage and its sha256, never a path of the machine that
    trained it, so it loads wherever the plugin is installed (docs/pretrained.md, `mnist-latent`)."""
    ckpt, spec = shipped_class_conditional("mnist-latent")
    ae = spec["autoencoder"].options_dict
    assert spec["autoencoder"].name == "kl" and ae["weights"] == "mnist-kl" and len(ae["weights_sha256"]) == 64
    assert (spec["schedule"].name, spec["denoiser"].options_dict["prediction"]) == ("cosine", "v")
    assert spec["denoiser"].options_dict["in_channels"] == 3 and spec["denoiser"].options_dict["image_size"] == 8
    assert ckpt.step == ckpt.train_config["steps"] == 3000
    x = load("mnist-latent").sample(4, steps=4, guidance=False, seed=0)
    assert x.shape == (4, 1, 28, 28) and torch.isfinite(x).all()  # decoded to digits
