"""What a run trains on and with: its data opened as a :class:`~cnnkit.data.Dataset`, the net
for that data, the preprocessing between them, and the split into training and validation
images. :func:`cnnkit.app.training.fit` calls these in order; each raises one line
(:class:`~cnnkit.errors.CnnkitError`) naming what does not fit.
"""

from __future__ import annotations

import numpy as np

from ..data import Augment, Dataset, Preprocessing, choose_fit, open_source, split_indices
from ..data.npz import arrays_dataset
from ..errors import UsageError
from ..models import build_model, canonical_name, default_model_for, input_shape_of, spec
from ..nn import Module, build, shapes_only
from .config import RunConfig, volume_text

__all__ = ["open_data", "net_input", "preprocessing_for", "build_net", "model_label",
           "run_prefix", "val_count", "split_train", "check_rebuildable", "ARRAYS"]

#: What a run records as its source when it trained on arrays given in memory.
ARRAYS = "arrays"


def model_label(model) -> str:
    """How a run records its net: a zoo model's registry name, a spec in its canonical form,
    "default", or for a Module of the user's ``module:ClassName``."""
    if isinstance(model, Module):
        return f"module:{type(model).__name__}"
    if model is None or model == "default":
        return "default"
    if spec.is_spec(model):
        return spec.describe(model)          # a SpecError shows the spec with a caret
    try:
        return canonical_name(model)
    except ValueError as err:
        raise UsageError(str(err)) from None


def run_prefix(label: str) -> str:
    """The start of a run folder's name: the zoo name, "spec" for a pattern spec, the class
    name of a Module."""
    if label.startswith("module:"):
        return label.split(":", 1)[1].lower() or "module"
    return "spec" if spec.is_spec(label) else label


def short(label: str) -> str:
    """A net's name for a message: the spec's text unless it is long."""
    return label if len(label) < 60 else "the spec"


def _decode_hint(config: RunConfig) -> tuple:
    """(channels, (H, W)) a folder's images are decoded to, from ``input``, a spec's INPUT or a
    zoo model's designed size; None where nothing says (the first image decides)."""
    text = config.model
    if config.input:
        c, h, w = config.input
        return c, (h, w)
    if text == "default" or text.startswith("module:"):
        return None, None
    if spec.is_spec(text):
        given = spec.parse(text).input_shape
        return (None, None) if given is None else (given[0], tuple(given[1:]))
    return None, tuple(input_shape_of(text)[1:])


def open_data(data, config: RunConfig, *, classes=None, progress: bool = False) -> Dataset:
    """The run's data as a Dataset, checked trainable (two classes at least, no test class
    without training images).

    ``data``: a source's text ("mnist", "folder:DIR", ...), opened with the run's settings; a
    :class:`~cnnkit.data.Dataset`, as it is; or arrays ``(x, y)`` / ``(x, y, x_test, y_test)``
    in any form the ``npz:`` source accepts, named by ``classes``.
    """
    if classes is not None and not isinstance(data, (tuple, list)):
        raise UsageError("classes= names the classes of arrays given as data=(x, y); a source "
                         "or a Dataset names its own")
    if isinstance(data, str):
        channels, size = _decode_hint(config)
        dataset = open_source(data, channels=channels, size=size, test_size=config.test_size,
                              seed=config.seed, skip_bad=config.skip_bad, progress=progress)
    elif isinstance(data, Dataset):
        dataset = data
    elif isinstance(data, (tuple, list)) and len(data) in (2, 4):
        dataset = arrays_dataset(*data, classes=classes, source=ARRAYS, where="data",
                                 test_size=config.test_size, seed=config.seed)
    else:
        what = f"a {type(data).__name__} of {len(data)}" if isinstance(data, (tuple, list)) \
            else f"a {type(data).__name__}"
        raise UsageError(f"data= takes a source such as \"mnist\" or \"folder:DIR\", a Dataset, "
                         f"or arrays (x, y) or (x, y, x_test, y_test); got {what}")
    dataset.check_trainable()
    return dataset


def net_input(config: RunConfig, image_shape: tuple, model: Module | None = None) -> tuple:
    """(the net's label with the default resolved, the input volume it takes): ``input``, a
    spec's INPUT, a zoo model's designed H x W on the images' channels, or the images' own
    volume (a spec without INPUT, the default net, a Module)."""
    text, given = config.model, config.input
    if model is not None or text.startswith("module:"):     # (resumed from its checkpoint)
        return text, tuple(given) if given else tuple(image_shape)
    if text == "default":
        shape = tuple(given) if given else tuple(image_shape)
        try:
            return default_model_for(shape), shape
        except ValueError as err:
            raise UsageError(str(err)) from None
    if spec.is_spec(text):
        declared = spec.parse(text).input_shape
        if declared is not None and given and tuple(declared) != tuple(given):
            raise UsageError(f"--input {volume_text(given)} disagrees with the spec's "
                             f"INPUT[{volume_text(declared)}]")
        shape = tuple(declared or given or image_shape)
        spec.trace(text, shape)   # a spec error echoes the user's text with a caret
        if declared is None:      # the run records the volume the spec was built on
            text = f"INPUT[{volume_text(shape)}] -> {text}"
        return text, shape
    if given:
        return text, tuple(given)
    return text, (image_shape[0], *input_shape_of(text)[1:])


def preprocessing_for(dataset: Dataset, label: str, shape: tuple, fit: str) -> Preprocessing:
    """The one preprocessing path from the dataset's stored images to the net's ``shape``:
    /255, centred or resized, normalised by the training split's channel statistics."""
    image_shape = dataset.image_shape
    if shape[0] != image_shape[0]:
        raise UsageError(f"{short(label)} takes {volume_text(shape)} input; {dataset.title} "
                         f"images are {volume_text(image_shape)} (the net needs "
                         f"{image_shape[0]} channel{'s' if image_shape[0] > 1 else ''}; give "
                         f"--input or a spec's INPUT with {image_shape[0]})")
    try:
        fitted = choose_fit(image_shape[1:], shape[1:], fit)
    except ValueError as err:             # images larger than the net's input, to --fit centre
        raise UsageError(str(err)) from None
    mean, std = dataset.channel_stats()
    return Preprocessing(image_shape, shape, mean, std, fitted, dataset.brightness())


def check_outputs(model: Module, label: str, shape: tuple, num_classes: int, title: str):
    """The net must give ``num_classes`` scores per image of ``shape``."""
    try:
        out = tuple(model.output_shape(tuple(shape)))
    except ValueError as err:
        raise UsageError(f"{short(label)} does not take {volume_text(shape)} input: {err} "
                         f"(give the volume it takes with input=/--input; the images are "
                         f"resized or centred to it)") from None
    if out != (num_classes,):
        raise UsageError(f"{short(label)} gives outputs of shape {out} per image; {title} has "
                         f"{num_classes} classes (end the net with FC-{num_classes})")


def build_net(label: str, shape: tuple, num_classes: int, title: str, rng) -> Module:
    """The zoo model or spec ``label`` on ``shape`` input, its weights drawn from ``rng``; it
    must give ``num_classes`` scores."""
    model, _ = build_model(label, shape, num_classes=num_classes, rng=rng)
    check_outputs(model, label, shape, num_classes, title)
    return model


def check_rebuildable(model: Module) -> None:
    """A net saved in a run folder must rebuild from its config (checkpoints hold no code):
    refuse, before training, a Module whose class (or a child's) is not registered."""
    try:
        with shapes_only():
            build(model.config())
    except ValueError as err:
        raise UsageError(f"the net cannot be saved in a run folder: {err} (a net of your own "
                         f"trains in memory with out=None)") from None


def val_count(val_size, n: int) -> int:
    """``val_size`` as a count for n training images: a count (at most n - 1), a fraction, or
    by default a tenth of them up to 5,000."""
    if val_size is None:
        return min(5000, n // 10)
    count = int(round(val_size * n)) if isinstance(val_size, float) else int(val_size)
    if count >= n:
        raise UsageError(f"--val-size {val_size:g} leaves no training images out of {n}; give "
                         f"fewer (or a fraction such as 0.1)")
    return count


def split_train(dataset: Dataset, config: RunConfig, rng: np.random.Generator):
    """(training part, validation part) of the first ``limit`` training images, the validation
    images drawn at random from ``rng``."""
    train = dataset.train.head(config.limit)
    train_idx, val_idx = split_indices(len(train), val_count(config.val_size, len(train)), rng)
    return train.subset(train_idx), train.subset(val_idx)


def augment_for(config: RunConfig, dataset: Dataset, shape: tuple):
    """(the augmentation's text with "auto" resolved to the data's own, the Augment)."""
    text = dataset.default_augment if config.augment == "auto" else config.augment
    try:
        return text, Augment.parse(text, shape[1:])
    except ValueError as err:
        raise UsageError(str(err)) from None
