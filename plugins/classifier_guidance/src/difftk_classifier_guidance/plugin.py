"""Entry point of the classifier_guidance plugin."""

import difftk

from difftk_classifier_guidance.guidance import ClassifierGuidance
from difftk_classifier_guidance.networks import NoisyCNN, NoisyMLP


@difftk.hookimpl
def difftk_register_components(register):
    register.add_guidance("classifier", ClassifierGuidance)
    register.add_classifier("noisy-cnn", NoisyCNN)
    register.add_classifier("noisy-mlp", NoisyMLP)
