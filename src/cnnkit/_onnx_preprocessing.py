"""The preprocessing of a checkpoint as ONNX operators, for ``to_onnx(..., preprocessing=...)``:
a graph that takes the images as they are stored and answers softmax probabilities.

    images   uint8 (N, h, w) grey, (N, h, w, C) otherwise, at the training images' size
    x = Cast(images) / 255                 float32, as cnnkit.data.to_float
    x = (N, C, h, w)                       Reshape (grey) or Transpose (channels last)
    x = fit(x)                             "centre": Pad with zeros to the net's H x W
                                           "resize": Resize, linear, antialias=1,
                                             exclude_outside=1, half_pixel (opset 18):
                                             Pillow's bilinear filter, widened when shrinking,
                                             its weights renormalised at the borders
    x = (x - mean[c]) / std[c]             per channel, as cnnkit.data.normalize
    probabilities = Softmax(net(x))        (N, K), one column per class

Every step is the one :class:`cnnkit.data.Preprocessing` and :func:`cnnkit.inference.classify`
take, in their order, so onnxruntime's probabilities are ``predict_images``' to float32
rounding. What stays with the server is what comes before the stored form: decoding a file to
the training images' channels and size, and inverting a grey image darker or lighter than the
training images (:func:`server_steps`).
"""

from __future__ import annotations

import numpy as np

from typing import TYPE_CHECKING

from .app.config import volume_text
from .data.preprocess import Preprocessing

if TYPE_CHECKING:       # export.py imports this module: a run-time import would be a cycle
    from .export import OnnxGraph

__all__ = ["RESIZE_OPSET", "add_front", "add_back", "input_dims", "problem", "graph_metadata",
           "server_steps"]

#: The oldest opset whose Resize has ``antialias`` (the filter Pillow widens when shrinking).
RESIZE_OPSET = 18


def problem(preprocessing, input_shape: tuple, out_shape: tuple, opset: int,
            max_dim: int) -> str | None:
    """What keeps ``preprocessing`` out of the graph of a net taking ``input_shape`` and
    answering ``out_shape``, in one line; None when nothing does. Refused: what is not a
    :class:`Preprocessing`, one that leads to another input than ``input_shape``, recorded image
    sizes that are not 1 to ``max_dim`` pixels, a mean or std that is not finite in float32, a
    net whose output is not one score per class (``out_shape`` (K,)), and a resize fit below
    opset 18."""
    if not isinstance(preprocessing, Preprocessing):
        return (f"preprocessing must be a cnnkit.data.Preprocessing (a checkpoint's: "
                f"cnnkit.inference.load_for_inference), got "
                f"{type(preprocessing).__name__}")
    if tuple(preprocessing.input_shape) != tuple(input_shape):
        return (f"the preprocessing makes {volume_text(preprocessing.input_shape)} "
                f"inputs, but the export is asked for {volume_text(input_shape)}; "
                f"leave the input shape at the recorded one")
    image_shape = tuple(preprocessing.image_shape)
    if not all(1 <= s <= max_dim for s in image_shape):
        return (f"the recorded image size {volume_text(image_shape)} is no size of "
                f"images an ONNX runtime takes (1 to {max_dim:,} per axis)")
    values = np.asarray([*preprocessing.mean, *preprocessing.std], dtype=np.float64)
    if not (np.isfinite(values).all() and np.abs(values).max() <= np.finfo(np.float32).max):
        return (f"the recorded mean {list(preprocessing.mean)} and std "
                f"{list(preprocessing.std)} must be finite float32 numbers")
    if len(out_shape) != 1:
        return (f"the net answers {volume_text(out_shape)} per image, not one score per "
                f"class; a graph ending in softmax probabilities needs (K,) scores")
    if preprocessing.fit == "resize" and opset < RESIZE_OPSET:
        return (f"the images are resized ({preprocessing.describe()}), which needs "
                f"opset {RESIZE_OPSET} or later: ONNX's Resize has the antialiasing "
                f"Pillow applies when shrinking only from opset {RESIZE_OPSET} "
                f"(asked for {opset})")
    return None


def input_dims(preprocessing: Preprocessing) -> list[int]:
    """The graph input's dims after the batch axis: (h, w) for grey images, (h, w, C) else."""
    c, h, w = (int(s) for s in preprocessing.image_shape)
    return [h, w] if c == 1 else [h, w, c]


def add_front(graph: OnnxGraph, preprocessing: Preprocessing, images: str) -> str:
    """The operators from ``images`` (uint8, :func:`input_dims`) to the net's normalised float32
    input (N, C, H, W); returns that tensor's name."""
    from onnx import TensorProto

    c, h, w = preprocessing.image_shape
    hh, ww = preprocessing.input_shape[1:]
    x = graph.node("Cast", [images], name="preprocessing.cast", to=TensorProto.FLOAT)
    x = graph.node("Div", [x, graph.initializer("preprocessing.255", np.float32(255))],
                   name="preprocessing.scale")
    if c == 1:                                  # (N, h, w) -> (N, 1, h, w)
        x = graph.node("Reshape", [x, graph.constant([0, 1, h, w], "preprocessing.shape")],
                       name="preprocessing.channels")
    else:                                       # (N, h, w, C) -> (N, C, h, w)
        x = graph.node("Transpose", [x], name="preprocessing.channels", perm=[0, 3, 1, 2])
    if preprocessing.fit == "centre":           # as cnnkit.data.preprocess._centre
        top, left = (hh - h) // 2, (ww - w) // 2
        pads = [0, 0, top, left, 0, 0, hh - h - top, ww - w - left]
        x = graph.node("Pad", [x, graph.constant(pads, "preprocessing.pads")],
                       name="preprocessing.centre", mode="constant")
    elif preprocessing.fit == "resize":         # as cnnkit.data.preprocess._resize
        x = graph.node("Resize", [x, "", "", graph.constant([hh, ww], "preprocessing.size")],
                       name="preprocessing.resize", mode="linear", antialias=1,
                       exclude_outside=1, coordinate_transformation_mode="half_pixel",
                       axes=[2, 3])
    mean = np.asarray(preprocessing.mean, np.float64).astype(np.float32).reshape(c, 1, 1)
    std = np.asarray(preprocessing.std, np.float64).astype(np.float32).reshape(c, 1, 1)
    x = graph.node("Sub", [x, graph.initializer("preprocessing.mean", mean)],
                   name="preprocessing.subtract_mean")
    return graph.node("Div", [x, graph.initializer("preprocessing.std", std)],
                      name="preprocessing.normalise")


def add_back(graph: OnnxGraph, scores: str) -> str:
    """Softmax over the class axis of the net's (N, K) ``scores``, as ``classify`` takes it."""
    return graph.node("Softmax", [scores], name="probabilities", axis=1)


def server_steps(preprocessing: Preprocessing) -> list[str]:
    """What a server still does to an image file before the graph takes it, in words."""
    c, h, w = preprocessing.image_shape
    mode = {1: "grey (Pillow's mode L)", 3: "RGB"}.get(c, f"{c} channels")
    steps = [f"decode each image to {mode} at {h}x{w} (height x width), resizing it with "
             f"Pillow's bilinear filter when its size differs (cnnkit.data.decode_image)"]
    if c == 1:
        side = "light" if preprocessing.brightness > 0.5 else "dark"
        steps.append(f"invert (255 - pixels) a grey image whose mean brightness (0..1) is on "
                     f"the other side of 0.5 from the training images' "
                     f"({preprocessing.brightness:.3f}, {side}), as predict's --invert auto "
                     f"does")
    steps.append(f"stack them as uint8 (N, {', '.join(map(str, input_dims(preprocessing)))})")
    return steps


def graph_metadata(preprocessing: Preprocessing, input_name: str, output_name: str) -> dict:
    """``cnnkit.preprocessing`` of a graph that includes it: the recorded fields, ``in_graph``
    true, the graph's input and output, and the server's remaining steps."""
    return {**preprocessing.to_metadata(), "in_graph": True,
            "graph_input": {"name": input_name, "dtype": "uint8",
                            "shape": ["N", *input_dims(preprocessing)]},
            "graph_output": {"name": output_name, "holds": "softmax probabilities, one column "
                             "per class, in the order of cnnkit.classes"},
            "server_steps": server_steps(preprocessing)}
