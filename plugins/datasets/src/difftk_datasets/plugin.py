"""Entry point of the datasets plugin: registers its dataset components."""

import difftk

from difftk_datasets.cifar import CIFAR10
from difftk_datasets.emoji import Emoji
from difftk_datasets.image_folder import ImageFolder
from difftk_datasets.mnist import MNIST
from difftk_datasets.toys import GaussianMixture, SwissRoll, TwoMoons


@difftk.hookimpl
def difftk_register_components(register):
    for cls in (MNIST, CIFAR10, Emoji, ImageFolder, GaussianMixture, TwoMoons, SwissRoll):
        register.add_dataset(cls.NAME, cls)
