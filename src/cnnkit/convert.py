"""FC -> conv conversion: a classifier that slides over a larger image in one forward pass.

An FC layer over a [C'xH'xW'] volume computes the same dot products as a conv layer with H'xW'
filters, one per output unit; the FC layers after it are 1x1 convs. Converted, the net that was
built for 224x224 inputs runs on a 384x384 image and returns a map of class scores, one per
224x224 crop at a stride of S = the product of the strides of its conv/pool part (the notes' AlexNet
/ VGG example: 5 pools of 2, S = 32, [7x7x512] at 224 and [12x12x512] at 384, so a 7x7 conv gives
(12 - 7)/1 + 1 = 6 and the score map is 6x6x1000):

    positions on a larger image:  h = (H_img - H)/S + 1,   w = (W_img - W)/S + 1
    score map[n, :, i, j] = original net(image[n, :, i*S : i*S + H, j*S : j*S + W])

The equality is exact when no layer of the conv/pool part pads (a padded conv sees zeros at a
crop's border where the larger image has pixels) and batch norm and dropout are in eval mode;
:func:`inexact_reasons` says what breaks it. For a crop stride smaller than S, shift the image by
a fraction of S and run the converted net once per shift.

Public names: :func:`fully_convolutional`, :func:`output_stride`, :func:`score_map_size`,
:func:`sliding_scores` (the reference loop over crops), :func:`inexact_reasons`,
:func:`converted_is_exact`.
"""

from __future__ import annotations

import math

import numpy as np

from . import nn
from .checks import as_float_array, check_example_shape
from .errors import UsageError
from .nn import brief
from .nn.facts import last_out

__all__ = ["fully_convolutional", "output_stride", "score_map_size", "sliding_scores", "explain",
           "inexact_reasons", "converted_is_exact"]


# ----------------------------------------------------------------------------- the walk

def _chain(model) -> list:
    """``[(dotted_name, layer)]``: the layers ``model`` runs one after another (nested
    Sequentials expanded)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a cnnkit.nn.Module, got {type(model).__name__}")
    return list(model.named_chain())


def _split(layers) -> int | None:
    """Index of the first Flatten or Linear (the start of the classifier), or None."""
    return next((k for k, (_, layer) in enumerate(layers)
                 if isinstance(layer, (nn.Flatten, nn.Linear))), None)


def _steps(layers, shape: tuple):
    """``(name, layer, in shape, out shape)`` along ``layers``, each traced by its facts."""
    for name, layer in layers:
        out = _trace(layer, name, shape)
        yield name, layer, shape, out
        shape = out


def _trace(layer, name: str, shape: tuple) -> tuple:
    """The output shape of ``layer`` (called ``name`` in the net), errors naming the layer."""
    return last_out(layer.walk_shapes(shape, name), shape)


def _stride(features, shape: tuple):
    """``((sh, sw), None)``: the product of the layers' strides; or ``(None, (name, layer, out
    shape))`` naming the first layer that does not say its stride."""
    sh = sw = 1
    for name, layer, in_shape, out in _steps(features, shape):
        stride = layer.output_stride(in_shape)
        if stride is None:
            return None, (name, layer, out)
        sh, sw = sh * stride[0], sw * stride[1]
    return (sh, sw), None


def _through(layers, shape: tuple) -> tuple:
    """The per-example shape after ``layers``."""
    for name, layer in layers:
        shape = _trace(layer, name, shape)
    return shape


def _global_pool(layers, shape: tuple):
    """``(name, module)`` of the first module, among ``layers`` and their children, that takes
    the whole map to one position (a 1x1 output and no stride: a global pool), or None."""
    for name, layer in layers:
        steps = list(layer.walk_shapes(shape, name))
        for step in steps:
            if step.out_shape[1:] == (1, 1) and step.module.output_stride(step.in_shape) is None:
                return step.name, step.module
        shape = last_out(steps, shape)
    return None


# ----------------------------------------------------------------------------- public API

def output_stride(model, input_shape) -> tuple[int, int]:
    """How far apart, in input pixels, the crops are whose scores the converted net's map holds.

        S = product of the strides of the layers before the classifier
            (conv and pooling strides; a Residual's or Concat's is its body's)

    Parameters
    ----------
    model : nn.Module, a Sequential (nested ones are expanded); its layers up to the first
        Flatten or Linear are the conv/pool part. Works on a converted net too (its 1x1 and
        H'xW' convs have stride 1).
    input_shape : (C, H, W), the input the model was built for

    Returns
    -------
    (sh, sw) : ints

    Raises
    ------
    ValueError
        If the model holds a GlobalAvgPool2d (it pools over the whole map, so there is no stride),
        a layer does not fit the volume it gets, or an unknown layer changes the size and has no
        ``stride`` attribute.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=3), nn.MaxPool2d(2), nn.Flatten(),
    ...                     nn.Linear(4 * 2 * 2, 5))
    >>> output_stride(net, (3, 12, 12))
    (6, 6)
    """
    layers = _chain(model)
    shape = check_example_shape(input_shape, "input_shape", volume=True)
    end = _split(layers)
    features = layers if end is None else layers[:end]
    gap = _global_pool(features, shape)
    if gap is not None:
        raise ValueError(f"layer {gap[0]} {brief(gap[1])} takes the whole map to one position, "
                         f"so the net has no output stride (its output is one score vector per "
                         f"image)")
    stride, unknown = _stride(features, shape)
    if unknown is not None:
        name, layer, out = unknown
        raise ValueError(f"cannot tell the stride of layer {name} {brief(layer)} (it maps "
                         f"the volume to {out} and has no `stride` attribute)")
    return stride


def score_map_size(converted, image_shape) -> tuple[int, int]:
    """(h, w) of the converted net's score map on an image of ``image_shape`` (C, H_img, W_img).

        h = (H_img - H)/S + 1,  w = (W_img - W)/S + 1   (H x W the net's own input, S its stride)

    traced through the layers by the size rule (nothing is computed). With strict layers an image
    size must make every layer's size rule an integer: H_img = H + m*S does.

    Raises
    ------
    ValueError
        If the net still holds a Flatten or Linear (convert it first), or a layer's size rule
        fails on this image (the message names the layer and the numbers).
    """
    layers = _chain(converted)
    shape = check_example_shape(image_shape, "image_shape", volume=True)
    end = _split(layers)
    if end is not None:
        name, layer = layers[end]
        raise ValueError(f"layer {name} {brief(layer)}: the net is not fully convolutional; "
                         f"convert it with fully_convolutional(model, input_shape) first")
    shape = _through(layers, shape)
    if len(shape) != 3:
        raise ValueError(f"the net gives a {shape} output per example, not a (K, h, w) map")
    return tuple(shape[1:])


def _conv_from_linear(linear: nn.Linear, volume: tuple) -> nn.Conv2d:
    """Conv2d(C', out, (H', W')) with weight = linear.weight.reshape(out, C', H', W') (copies;
    a placeholder stays one)."""
    c, h, w = volume
    with nn.shapes_only():                                # its weight is replaced below
        conv = nn.Conv2d(c, linear.out_features, (h, w), bias=linear.bias is not None,
                         init=linear.init, weight_scale=linear.weight_scale)
    shape = (linear.out_features, c, h, w)
    if linear.weight.is_placeholder:
        conv.weight = nn.Parameter.placeholder(shape, linear.weight.dtype)
    else:   # (out, C'*H'*W') -> (out, C', H', W'): Flatten's order is C, then H, then W.
        conv.weight = nn.Parameter(linear.weight.data.reshape(shape))
    if linear.bias is not None:
        conv.bias = nn.Parameter(linear.bias.data)
    return conv.train(linear.training)


def _bn2d_from_bn1d(bn: nn.BatchNorm1d) -> nn.BatchNorm2d:
    """BatchNorm2d with the same gamma, beta, running statistics, eps, momentum and mode."""
    new = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum)
    new.weight, new.bias = nn.Parameter(bn.weight.data), nn.Parameter(bn.bias.data)
    for buf in ("running_mean", "running_var", "num_batches_tracked"):
        new.register_buffer(buf, np.array(getattr(bn, buf), copy=True))   # dtype kept
    return new.train(bn.training)


def fully_convolutional(model, input_shape) -> nn.Sequential:
    """The net with its FC classifier turned into conv layers, so it slides over larger images.

        volume at the Flatten for input_shape: C' x H' x W'
        first Linear(C'*H'*W', F1)  ->  Conv2d(C', F1, (H', W')),
                                        weight = linear.weight.reshape(F1, C', H', W')
        later Linear(F, G)          ->  Conv2d(F, G, 1)
        BatchNorm1d(F)              ->  BatchNorm2d(F), same gamma, beta, running stats, eps,
                                        momentum and mode
        position-wise layers (activations, dropout): kept (copies, a Dropout's rng state too)
        Flatten: removed

    The conv/pool part is copied as it is. On an image of ``input_shape`` the result gives
    ``(N, K, 1, 1)``, equal to ``model(x)``; on a larger one a score map of
    ``(H_img - H)/S + 1`` x ``(W_img - W)/S + 1`` positions, S = :func:`output_stride`, equal to
    :func:`sliding_scores` when :func:`converted_is_exact` (no padding in the conv/pool part, batch
    norm and dropout in eval mode); with padding it is an approximation (see the module notes).

    The result is a flat ``nn.Sequential`` holding COPIES of every weight and buffer (the model is
    left untouched), in the same train/eval mode layer by layer, with zero gradients.

    Parameters
    ----------
    model : nn.Module, a Sequential (nested Sequentials are expanded): a conv/pool part (any
        spatial layers: conv, pooling, BatchNorm2d, activations, Residual, ...), then Flatten,
        then a classifier of Linear layers with BatchNorm1d and position-wise layers between
        them (``layer.position_wise``: activations, dropout).
        A Linear straight after the conv/pool part (it flattens its input itself) is accepted.
    input_shape : (C, H, W), the input the model was built for

    Returns
    -------
    nn.Sequential, input (N, C, H_img, W_img) -> scores (N, K, h, w)

    Raises
    ------
    ValueError
        If there is nothing to convert (no Linear: the net is already fully convolutional; a
        GlobalAvgPool2d head: it already takes any size and pools over the whole map), a layer
        of the conv/pool part cannot take a larger image (a LocallyConnected2d: its weights are
        tied to one input size), a layer after the Flatten is not one of the above (named), a
        BatchNorm1d sits between the Flatten and the first Linear, or a Linear's in_features
        does not match the volume it gets (both numbers).

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    ...                     nn.Linear(8 * 5 * 5, 16), nn.ReLU(), nn.Linear(16, 10))
    >>> conv_net = fully_convolutional(net, (3, 12, 12))
    >>> conv_net(np.zeros((1, 3, 12, 12), np.float32)).shape
    (1, 10, 1, 1)
    >>> conv_net(np.zeros((1, 3, 20, 16), np.float32)).shape      # (20 - 12)/2 + 1, (16 - 12)/2 + 1
    (1, 10, 5, 3)
    """
    layers = _chain(model)
    input_shape = check_example_shape(input_shape, "input_shape", volume=True)
    end = _split(layers)
    features = layers if end is None else layers[:end]
    gap = _global_pool(features, input_shape)
    if end is None or not any(isinstance(layer, nn.Linear) for _, layer in layers[end:]):
        why = (f"its layer {gap[0]} {brief(gap[1])} already pools over the whole map"
               if gap else "it is already fully convolutional and slides over a larger image as "
                           "it is")
        raise ValueError(f"nothing to convert: {brief(model)} has no Linear layer; {why}")
    if gap is not None:
        raise ValueError(
            f"nothing to convert: layer {gap[0]} {brief(gap[1])} averages the feature map over "
            f"all positions, so the net already takes any image size and returns one score "
            f"vector per image, not a map; to score crops, put an AvgPool2d whose window is the "
            f"map size at {'x'.join(map(str, input_shape))} (stride 1) in its place and convert "
            f"that net")
    shape = _through(features, input_shape)
    if len(shape) != 3:
        raise ValueError(f"the conv/pool part gives a {shape} output per example, not a "
                         f"(C', H', W') volume")
    stride, _ = _stride(features, input_shape)
    if stride is not None:             # one stride more: the smallest larger image it must take
        c, h, w = input_shape
        try:
            _through(features, (c, h + stride[0], w + stride[1]))
        except ValueError as err:
            raise ValueError(f"the converted net could not slide over a larger image: {err}") \
                from err

    head, channels = [], None           # channels: the last Linear's out_features
    for name, layer in layers[end:]:
        where = f"layer {name} {brief(layer)}"
        if isinstance(layer, nn.Flatten):
            continue
        if isinstance(layer, nn.Linear):
            volume = shape if channels is None else (channels, 1, 1)
            if layer.in_features != math.prod(volume):
                got = (f"the volume at the Flatten for input {'x'.join(map(str, input_shape))} "
                       f"is {'x'.join(map(str, volume))} = {math.prod(volume)}"
                       if channels is None else f"the previous Linear gives {channels}")
                raise ValueError(f"{where}: in_features = {layer.in_features}, but {got}")
            head.append(_conv_from_linear(layer, volume))
            channels = layer.out_features
        elif isinstance(layer, nn.BatchNorm1d):
            if channels is None:
                raise ValueError(f"{where} normalises each of the {math.prod(shape)} values of "
                                 f"the flattened {'x'.join(map(str, shape))} volume on its own; "
                                 f"no BatchNorm2d does that, so it has no conv equivalent")
            if layer.num_features != channels:
                raise ValueError(f"{where}: num_features = {layer.num_features}, but the "
                                 f"previous Linear gives {channels} features")
            head.append(_bn2d_from_bn1d(layer))
        elif layer.position_wise:
            head.append(layer.copy())
        else:
            raise ValueError(
                f"{where} follows the Flatten and has no conv equivalent; a classifier to convert "
                f"holds only Linear, BatchNorm1d and position-wise layers (activations, "
                f"dropout)")

    result = nn.Sequential(*(layer.copy() for _, layer in features), *head)
    result.training = model.training
    result.zero_grad()
    return result


def sliding_scores(model, image, input_shape) -> np.ndarray:
    """The reference the conversion is checked against: the ORIGINAL model on every crop.

        S = output_stride(model, input_shape),  h = (H_img - H)//S + 1,  w = (W_img - W)//S + 1
        out[:, :, i, j] = model(image[:, :, i*S : i*S + H, j*S : j*S + W])

    A loop of h*w forward passes (batch N each), in the model's current mode: call
    ``model.eval()`` first for deterministic scores (in training mode batch norm updates its
    running statistics on every crop).

    Parameters
    ----------
    model : nn.Module mapping (N, C, H, W) to scores (N, K)
    image : (N, C, H_img, W_img) array, H_img >= H and W_img >= W
    input_shape : (C, H, W), the input the model was built for

    Returns
    -------
    (N, K, h, w) array

    Raises
    ------
    ValueError
        If the image is not 4-D, has other channels than input_shape, is smaller than a crop,
        or the model does not give (N, K) scores; and as :func:`output_stride`.
    """
    c, h_in, w_in = check_example_shape(input_shape, "input_shape", volume=True)
    image = as_float_array(image, "sliding_scores image")
    if image.ndim != 4 or image.shape[1] != c or image.shape[2] < h_in or image.shape[3] < w_in:
        raise ValueError(f"sliding_scores: image must be (N, {c}, H_img, W_img) with H_img >= "
                         f"{h_in} and W_img >= {w_in} (crops of input_shape {c}x{h_in}x{w_in}), "
                         f"got shape {image.shape}")
    sh, sw = output_stride(model, input_shape)
    rows, cols = (image.shape[2] - h_in) // sh + 1, (image.shape[3] - w_in) // sw + 1
    out = None
    for i in range(rows):
        for j in range(cols):
            scores = model.forward(image[:, :, i * sh:i * sh + h_in, j * sw:j * sw + w_in])
            if np.ndim(scores) != 2:
                raise ValueError(f"sliding_scores: the model must give (N, K) scores per crop, "
                                 f"got shape {np.shape(scores)}")
            if out is None:
                out = np.empty((*scores.shape, rows, cols), scores.dtype)   # (N, K, h, w)
            out[:, :, i, j] = scores
    return out


def inexact_reasons(model) -> list[str]:
    """Why a converted net's score map may differ from :func:`sliding_scores` (empty: exact).

    A layer that pads (conv or pooling) sees zeros at each crop's border where the larger image
    has pixels; batch norm in training mode normalises with the statistics of the whole batch of
    positions, not of each crop; dropout in training mode draws other masks; group and layer norm
    normalise each sample over its whole map, in training and eval alike, so on the larger image
    their statistics come from all the crops at once. Works on the original or the converted net.
    """
    reasons = []
    for name, m in _chain(model):
        for sub, layer in m.named_modules():
            where = f"layer {name}{'.' + sub if sub else ''} {brief(layer)}"
            padding = getattr(layer, "padding", None)
            pads = tuple(int(v) for v in np.atleast_1d(padding)) if isinstance(
                padding, (int, tuple, list)) else ()
            if any(pads):
                reasons.append(f"{where} pads by {pads}: at a crop's "
                               f"border it sees zeros where the larger image has pixels")
            if isinstance(layer, (nn.GroupNorm, nn.LayerNorm)):
                reasons.append(f"{where} normalises each sample over its whole map: on a larger "
                               f"image its mean and variance come from every crop at once")
            effect = layer.training_effect()
            if layer.training and effect:
                reasons.append(f"{where} is in training mode ({effect}); call .eval()")
    return reasons


def converted_is_exact(model) -> bool:
    """True when the converted net's score map equals :func:`sliding_scores` up to rounding:
    no padding in the conv/pool part, no group or layer norm there, batch norm and dropout in
    eval mode (see :func:`inexact_reasons`)."""
    return not inexact_reasons(model)


def explain(model, converted, input_shape, image_shape=None) -> list[str]:
    """What ``cnnkit convert`` says of a conversion: the converted layers, the output stride,
    the score map's size on an image of ``image_shape`` (C, H, W) when given, and whether the
    score map is exact or approximate (:func:`inexact_reasons`).

    Raises ValueError when ``image_shape`` has other channels than the net takes."""
    shape = tuple(input_shape)
    sh, sw = output_stride(model, shape)
    out = [f"input {'x'.join(map(str, shape))} (CxHxW); the FC layers become convolutions:"]
    out += [f"  {i:>3}  {brief(layer)}" for i, layer in enumerate(converted)]
    out.append(f"output stride {sh}x{sw}: score map[i, j] holds the scores of the "
               f"{shape[1]}x{shape[2]} crop at (i*{sh}, j*{sw})")
    if image_shape:
        if image_shape[0] != shape[0]:
            raise UsageError(f"--image has {image_shape[0]} channels, the net takes {shape[0]}")
        h, w = score_map_size(converted, image_shape)
        out.append(f"on a {'x'.join(map(str, image_shape))} image: a {h}x{w} score map "
                   f"(({image_shape[1]} - {shape[1]})/{sh} + 1 = {h}) in one forward pass")
    reasons = inexact_reasons(model)
    if not reasons:
        return out + ["exact: the score map equals the original net run on every crop"]
    out.append("approximate, not exact, at every crop position:")
    out += [f"  - {reason}" for reason in reasons[:3]]
    if len(reasons) > 3:
        out.append(f"  - and {len(reasons) - 3} more layers like these")
    return out
