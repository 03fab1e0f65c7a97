"""The benchmark nets, built in cnnkit and translated layer by layer to PyTorch.

- ``mnist``: cnnkit's default net (``cnnkit.models.DEFAULT_MODEL``, LeNet-5 with batch norm), on
  1x28x28 inputs at batch 64, the batch ``cnnkit train`` uses;
- ``cifar``: three blocks of conv3x3 (pad 1, no bias: batch norm's beta is the bias) -> BN ->
  ReLU -> max pool 2x2, with 32, 64 and 128 channels, then Flatten -> FC-10, on 3x32x32 inputs at
  batch 128;
- ``spec-cifar`` (``SPEC_NETS``): the same layers written in the notes' pattern notation
  (``SPEC_CIFAR``) and built by ``cnnkit.models.build_model``, as a user builds a net from
  Python; its classifier starts from the spec's ``0.01 * randn``, not He. It is timed at each
  library's defaults only (``train-spec-cifar``, :mod:`benchmarks.suite`).

The PyTorch net is made from the cnnkit net's own description (``Module.config()``), one
``torch.nn`` module per cnnkit module, and given the cnnkit net's weights through the state dict,
whose names and shapes match PyTorch's by design. So both sides run the same architecture from
the same weights; :func:`benchmarks.steps.check_nets` confirms it on a batch before timing.
``cnnkit_train_step`` and ``torch_train_step`` make one training step a function of no arguments
(what is in a step: :mod:`benchmarks.steps`). Only the torch functions import torch, when
called, so a cnnkit-only process (the memory measurement) never loads it.
"""

from __future__ import annotations

import inspect

import numpy as np

from cnnkit import nn
from cnnkit.functional import softmax_loss
from cnnkit.models import DEFAULT_MODEL, build_model, get_model, spec
from cnnkit.optim import Adam

__all__ = ["NETS", "SPEC_NETS", "SPEC_CIFAR", "batch_and_shape", "cnnkit_net", "torch_net", "batch",
           "cnnkit_train_step", "torch_train_step"]

# name -> (batch size, input shape (C, H, W))
NETS = {
    "mnist": (64, (1, 28, 28)),
    "cifar": (128, (3, 32, 32)),
}
SPEC_CIFAR = ("INPUT[3x32x32] -> [CONV3-32 -> BN -> RELU -> POOL2] -> [CONV3-64 -> BN -> RELU -> "
              "POOL2] -> [CONV3-128 -> BN -> RELU -> POOL2] -> FC-10")
# name -> (batch size, the spec that builds it; its INPUT[CxHxW] is the input shape)
SPEC_NETS = {
    "spec-cifar": (128, SPEC_CIFAR),
}


def batch_and_shape(name: str) -> tuple[int, tuple]:
    """(batch size, input shape (C, H, W)) of a net of ``NETS`` or ``SPEC_NETS``."""
    if name in NETS:
        return NETS[name]
    if name in SPEC_NETS:
        n, text = SPEC_NETS[name]
        return n, spec.parse(text).input_shape
    raise ValueError(f"unknown benchmark net {name!r}; choose one of: "
                     f"{', '.join([*NETS, *SPEC_NETS])}")


def _cifar_net(rng) -> nn.Sequential:
    layers = []
    for c_in, c_out in ((3, 32), (32, 64), (64, 128)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False, rng=rng),
                   nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 10, rng=rng))


def cnnkit_net(name: str, seed: int = 0) -> nn.Module:
    """The named benchmark net in cnnkit, float32, train mode."""
    rng = np.random.default_rng(seed)
    batch_and_shape(name)                      # an unknown name fails here
    if name == "mnist":
        model = get_model(DEFAULT_MODEL, rng=rng)
    elif name == "cifar":
        model = _cifar_net(rng)
    else:
        model, _ = build_model(SPEC_NETS[name][1], rng=rng)
    return model.astype(np.float32).train()


def batch(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random float32 batch and integer labels for the named net."""
    n, shape = batch_and_shape(name)
    rng = np.random.default_rng(seed + 1)
    return rng.standard_normal((n, *shape), dtype=np.float32), rng.integers(0, 10, n)


def _torch_module(config: dict, torch):
    """One torch.nn module from a cnnkit module's ``config()`` (the layers the nets use); a pair
    is an int or a list there and an int or a tuple in torch."""
    tnn = torch.nn
    kind, args = config["type"], config.get("args", {})
    args = {k: tuple(v) if isinstance(v, list) and k != "layers" else v for k, v in args.items()}
    if kind == "Sequential":
        return tnn.Sequential(*(_torch_module(c, torch) for c in args["layers"]))
    if kind == "Conv2d":
        return tnn.Conv2d(args["in_channels"], args["out_channels"], args["kernel_size"],
                          stride=args["stride"], padding=args["padding"],
                          dilation=args["dilation"], bias=args["bias"])
    if kind == "BatchNorm2d":
        # cnnkit's momentum is the fraction of the old running value kept; PyTorch's the other.
        return tnn.BatchNorm2d(args["num_features"], eps=args["eps"],
                               momentum=1 - args["momentum"])
    if kind == "MaxPool2d":
        return tnn.MaxPool2d(args["kernel_size"], args["stride"], args["padding"])
    if kind == "Linear":
        return tnn.Linear(args["in_features"], args["out_features"], bias=args["bias"])
    if kind == "ReLU":
        return tnn.ReLU()
    if kind == "Flatten":
        return tnn.Flatten()
    raise ValueError(f"benchmarks.nets: no PyTorch translation of a cnnkit {kind}")


def torch_net(model: nn.Module, *, channels_last: bool = False):
    """The same architecture as the cnnkit ``model`` in torch.nn, with its weights, float32,
    train mode; with ``channels_last`` its 4-D weights are converted to that memory format."""
    import torch

    net = _torch_module(model.config(), torch).float()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net.train()


def cnnkit_train_step(model, x, y):
    """A function of no arguments doing one cnnkit training step on (x, y).

    The backward asks for no input gradient, as the Trainer does (x is data), and as PyTorch
    skips the gradient of an input that does not require grad. cnnkit before issue 5 had no
    ``input_grad`` option; the check lets the same harness time that version for comparison.
    """
    optimizer = Adam(model.named_parameters(), lr=1e-3)
    options = ({"input_grad": False}
               if "input_grad" in inspect.signature(model.backward).parameters else {})

    def step():
        optimizer.zero_grad()
        scores = model.forward(x)
        _, dscores = softmax_loss(scores, y)
        model.backward(dscores, **options)
        optimizer.step()
    return step


def torch_train_step(net, x_t, y_t):
    """A function of no arguments doing one PyTorch training step on (x_t, y_t)."""
    import torch
    import torch.nn.functional as TF

    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        TF.cross_entropy(net(x_t), y_t).backward()
        optimizer.step()
    return step
