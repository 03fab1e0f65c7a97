"""Data: named sources, one preprocessing path, readers, transforms and mini-batches.

    source.py       Dataset, Split, Images (lazy views), open_source and the source registry
    mnist.py        the shipped MNIST (source ``mnist``), sha256-checked; load_mnist
    cifar.py        CIFAR-10 from a local copy (source ``cifar10:DIR``), binary or python version
                    (a restricted unpickler); load_cifar10
    folder.py       a folder of images, one subfolder per class (source ``folder:DIR``), decoded
                    once into a memmapped cache
    npz.py          arrays x, y (and classes) of an .npz file (source ``npz:FILE``)
    images.py       decode_image: any image file, any mode, to (C, H, W) uint8 of a given size
    preprocess.py   Preprocessing: a batch of stored images -> the net's normalised input
    idx.py          read_idx, read_idx_images, read_idx_labels, write_idx (the IDX format)
    transforms.py   to_float, normalize, random_crop, random_hflip, Augment, MNIST_MEAN/STD
    loader.py       train_val_split, BatchOrder (the one batching path: a full permutation per
                    epoch and the position in it), BatchLoader

A new source is one module defining ``open_NAME(argument, **options) -> Dataset`` under
``@register_source("NAME", ...)``, and one import line below.

Corrupt or wrong files raise :class:`DataError` (a ``ValueError``) naming the file.
"""

from .errors import DataError
from .source import (DEFAULT_SOURCE, SOURCES, Dataset, Images, Split, canonical_source,
                     check_labels, open_source, pixel_stats, register_source, source_names,
                     split_indices, stratified_split)
from .idx import read_idx, read_idx_images, read_idx_labels, write_idx
from .loader import BatchLoader, BatchOrder, train_val_split
from .transforms import (MNIST_MEAN, MNIST_STD, Augment, normalize, random_crop, random_hflip,
                         to_float)
from .preprocess import FITS, Preprocessing, choose_fit
from .images import IMAGE_EXTENSIONS, decode_image, image_to_array
# the sources: each module registers itself
from .mnist import load_mnist, open_mnist
from .cifar import (CIFAR10_CLASSES, RestrictedUnpickler, load_cifar10, open_cifar10,
                    read_cifar10_binary, read_cifar10_python)
from .folder import open_folder, scan_folder
from .npz import load_npz, open_npz

__all__ = [
    "DataError",
    "Dataset", "Split", "Images", "open_source", "register_source", "source_names", "SOURCES",
    "DEFAULT_SOURCE", "canonical_source",
    "check_labels", "pixel_stats", "split_indices", "stratified_split",
    "Preprocessing", "choose_fit", "FITS", "decode_image", "image_to_array", "IMAGE_EXTENSIONS",
    "read_idx", "read_idx_images", "read_idx_labels", "write_idx",
    "load_mnist", "open_mnist",
    "read_cifar10_binary", "read_cifar10_python", "load_cifar10", "open_cifar10",
    "RestrictedUnpickler", "CIFAR10_CLASSES",
    "open_folder", "scan_folder", "open_npz", "load_npz",
    "to_float", "normalize", "random_crop", "random_hflip", "Augment", "MNIST_MEAN", "MNIST_STD",
    "train_val_split", "BatchOrder", "BatchLoader",
]
