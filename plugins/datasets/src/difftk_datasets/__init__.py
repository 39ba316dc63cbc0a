"""Datasets for difftk: MNIST (a sample ships with the package), CIFAR-10, image folders and 2-D toys."""

from difftk_datasets.cifar import CIFAR10
from difftk_datasets.common import SPLITS, DatasetError
from difftk_datasets.image_folder import ImageFolder
from difftk_datasets.mnist import MNIST
from difftk_datasets.toys import GaussianMixture, SwissRoll, TwoMoons

__all__ = ["CIFAR10", "SPLITS", "DatasetError", "GaussianMixture", "ImageFolder", "MNIST", "SwissRoll", "TwoMoons"]
