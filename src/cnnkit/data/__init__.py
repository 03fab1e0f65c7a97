"""Data: MNIST (shipped with the package), CIFAR-10 readers, transforms and mini-batches.

    idx.py          read_idx, read_idx_images, read_idx_labels, write_idx (the IDX format)
    mnist.py        load_mnist: the shipped copy, sha256-checked, or a folder of your own
    cifar.py        read_cifar10_binary, read_cifar10_python (restricted unpickler), load_cifar10
    transforms.py   to_float, normalize, random_crop, random_hflip, Augment, MNIST_MEAN/STD
    loader.py       train_val_split, BatchLoader (a full permutation per epoch)

Corrupt or wrong files raise :class:`DataError` (a ``ValueError``) naming the file.
"""

from .cifar import (CIFAR10_CLASSES, RestrictedUnpickler, load_cifar10, read_cifar10_binary,
                    read_cifar10_python)
from .errors import DataError
from .idx import read_idx, read_idx_images, read_idx_labels, write_idx
from .loader import BatchLoader, train_val_split
from .mnist import load_mnist
from .transforms import (MNIST_MEAN, MNIST_STD, Augment, normalize, random_crop, random_hflip,
                         to_float)

__all__ = [
    "DataError",
    "read_idx", "read_idx_images", "read_idx_labels", "write_idx",
    "load_mnist",
    "read_cifar10_binary", "read_cifar10_python", "load_cifar10", "RestrictedUnpickler",
    "CIFAR10_CLASSES",
    "to_float", "normalize", "random_crop", "random_hflip", "Augment", "MNIST_MEAN", "MNIST_STD",
    "train_val_split", "BatchLoader",
]
