"""Every registered component passes the conformance kit (the kit's own mutation tests: core/tests/test_conformance_kit.py)."""

from pathlib import Path

import difftk
import pytest
import torch
from difftk.components import plugins
from difftk.testing import (
    ReferenceLinearSchedule,
    ReferenceVPSchedule,
    check_sampler,
    check_schedule,
)
from difftk.testing.conformance import CHECKS


def _registered(kind):
    return [info.name for info in plugins.registry() if info.kind == kind]


@pytest.mark.parametrize("name", _registered("schedule"))
def test_schedules(name):
    check_schedule(difftk.create("schedule", name))
    if "T" in plugins.registry().get("schedule", name).option_fields():  # a discrete schedule
        check_schedule(difftk.create("schedule", name, T=250))


@pytest.mark.parametrize("name", _registered("sampler"))
@pytest.mark.parametrize("schedule", [ReferenceLinearSchedule(), ReferenceVPSchedule()], ids=["discrete", "continuous"])
def test_samplers(name, schedule):
    check_sampler(difftk.create("sampler", name), schedule)


#: objectives that need a teacher (a model to load): the plugin's tests run the kit on them with an exact oracle as teacher
NEEDS_A_TEACHER = {"consistency-distillation": "plugins/distill/tests/test_distill.py",
                   "reflow": "plugins/distill/tests/test_distill.py"}


@pytest.mark.parametrize("name", _registered("objective"))
def test_objectives(name):
    if name in NEEDS_A_TEACHER:
        text = (Path(__file__).resolve().parents[1] / NEEDS_A_TEACHER[name]).read_text()
        assert "check_objective" in text and f'"{name}"' in text, f"{NEEDS_A_TEACHER[name]} does not check {name}"
        return
    CHECKS["objective"](difftk.create("objective", name))


#: an instance of every registered denoiser for the kit, with the shape it is checked on
DENOISERS = {"unet-attn": ({"num_classes": 10}, (2, 1, 28, 28)), "mlp": ({"in_channels": 2, "num_classes": 3}, (4, 2)),
             "dit": ({"num_classes": 10, "hidden_size": 32, "depth": 2, "num_heads": 2}, (2, 1, 28, 28))}

#: an instance of every registered autoencoder that needs no file, with the data shape it is checked on
AUTOENCODERS = {"kl": ({"pad": 2}, (1, 28, 28))}

#: components held to their contract in their plugin's own tests (they need files or data to be built)
ELSEWHERE = {
    ("denoiser", "diffusers-unet"): "plugins/diffusers_bridge/tests/test_diffusers_components.py",
    ("autoencoder", "diffusers-vae"): "plugins/diffusers_bridge/tests/test_diffusers_autoencoder.py",
    ("guidance", "cfg"): "tests/test_guidance.py",
    ("guidance", "classifier"): "tests/test_guidance.py",
    ("guidance", "cfg++"): "plugins/cfg/tests/test_guidance_rules.py",
    ("guidance", "apg"): "plugins/cfg/tests/test_guidance_rules.py",
    ("guidance", "cfg-zero-star"): "plugins/cfg/tests/test_guidance_rules.py",
    ("guidance", "autoguidance"): "plugins/autoguidance/tests/test_autoguidance.py",
}
#: the kinds whose every component is checked by a file of its own
KIND_CHECKS = {"dataset": "plugins/datasets/tests/test_dataset_conformance.py",
               "metric": "tests/test_metric_draws.py",
               "logger": "plugins/trackers/tests/test_trackers.py"}


@pytest.mark.parametrize("name", _registered("classifier"))
def test_classifiers(name):
    """The Classifier contract: logits [B, num_classes], finite, on the data its options describe."""
    classifier = difftk.create("classifier", name)
    fields = plugins.registry().get("classifier", name).option_fields()
    size = getattr(classifier.config, "image_size", None) if hasattr(classifier, "config") else None
    channels = classifier.config.in_channels if hasattr(classifier, "config") else fields["in_channels"].default
    shape = (3, channels, size, size) if size else (3, channels)
    logits = classifier(torch.randn(shape), torch.rand(3))
    assert logits.shape == (3, classifier.num_classes) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(DENOISERS))
def test_denoisers(name):
    options, shape = DENOISERS[name]
    CHECKS["denoiser"](difftk.create("denoiser", name, **options), shape)


@pytest.mark.parametrize("name", sorted(AUTOENCODERS))
def test_autoencoders(name):
    options, shape = AUTOENCODERS[name]
    CHECKS["autoencoder"](difftk.create("autoencoder", name, **options), shape)


def test_every_registered_component_is_held_to_its_contract_somewhere():
    """A new component of a checked kind needs an entry above (or a check in its plugin's tests, named
    in ELSEWHERE); a new kind needs a check."""
    root = Path(__file__).resolve().parents[1]
    for info in plugins.registry():
        if info.kind in ("schedule", "sampler", "objective", "classifier"):
            continue  # every one of them is parametrized above
        if (info.kind == "denoiser" and info.name in DENOISERS) or (info.kind == "autoencoder" and info.name in AUTOENCODERS):
            continue
        where = ELSEWHERE.get((info.kind, info.name)) or KIND_CHECKS.get(info.kind)
        assert where is not None, f"{info.kind} '{info.name}' is checked nowhere: add it to this file's tables"
        text = (root / where).read_text()
        checks = f"check_{info.kind}(" in text or f'available("{info.kind}")' in text
        assert checks, f"{where} neither calls check_{info.kind} nor runs over every registered {info.kind}"
