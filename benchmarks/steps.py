"""Whole-net timings: a training step and inference throughput (nets from :mod:`benchmarks.nets`).

What is measured, with :func:`benchmarks.timing.measure`, in float32:

- a training step: zero the gradients, forward in train mode, softmax cross-entropy loss (mean
  over the batch), backward, one Adam update (lr 1e-3, betas (0.9, 0.999), eps 1e-8). cnnkit does
  it with the calls ``cnnkit.train.Trainer`` makes (``optimizer.zero_grad()``,
  ``model.forward``, ``softmax_loss``, ``model.backward``, ``optimizer.step()``); PyTorch with
  ``torch.optim.Adam`` and ``F.cross_entropy`` + ``loss.backward()``;
- inference: one forward of a batch in eval mode (running statistics); PyTorch under
  ``torch.inference_mode()``. Throughput is the batch size over the median time.

PyTorch runs in NCHW and in channels_last (the net converted with
``net.to(memory_format=torch.channels_last)``, the batch likewise). Each framework and layout
starts from its own copy of the same weights. Before timing, :func:`check_nets` runs a forward
and backward on both sides and compares the scores, the loss and every parameter gradient (the
guard of :mod:`benchmarks.guard`; PyTorch's channels_last gradients with a looser tolerance, see
``CHANNELS_LAST_GRAD_TOL``), so the nets are known to compute the same thing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as TF

from cnnkit.functional import softmax_loss

from .guard import GRAD_TOL, check_close, check_gradient
from .kernels import LAYOUTS
from .nets import (batch, batch_and_shape, cnnkit_net, cnnkit_train_step, torch_net,
                   torch_train_step)
from .timing import measure

__all__ = ["INFERENCE_BATCHES", "check_nets", "time_training", "time_inference"]

INFERENCE_BATCHES = (1, 256)
# PyTorch 2.13's float32 channels_last backward of the cifar net is less accurate than its NCHW
# one: its conv weight gradients differ from the float64 ones by up to 8e-3 in norm (NCHW: 5e-6,
# cnnkit: 1e-6; in float64 channels_last is exact), so that side's gradients get this tolerance.
CHANNELS_LAST_GRAD_TOL = 5e-2


def _to_torch(x: np.ndarray, layout: str):
    t = torch.from_numpy(np.array(x, copy=True))
    return t.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else t


def check_nets(name: str, model, net, x, y, layout: str = "nchw") -> None:
    """One forward and backward on both sides (no update), the batch given to PyTorch in
    ``layout``: scores, loss and every parameter gradient must agree. Leaves zero gradients."""
    model.zero_grad()
    scores = model.forward(x)
    loss, dscores = softmax_loss(scores, y)
    model.backward(dscores)
    net.zero_grad(set_to_none=True)
    scores_t = net(_to_torch(x, layout))
    loss_t = TF.cross_entropy(scores_t, torch.from_numpy(y))
    loss_t.backward()
    case = f"{name} net ({layout})"
    check_close(case, "scores", scores, scores_t.detach().numpy())
    check_close(case, "loss", loss, loss_t.item())
    grads_t = dict(net.named_parameters())
    tol = CHANNELS_LAST_GRAD_TOL if layout == "channels_last" else GRAD_TOL
    for pname, p in model.named_parameters():
        check_gradient(case, f"gradient of {pname}", p.grad, grads_t[pname].grad.numpy(),
                       tol=tol)
    model.zero_grad()
    net.zero_grad(set_to_none=True)


def time_training(name: str, *, repeats: int, warmup: int, budget: float,
                  seed: int = 0) -> dict:
    """Median training-step time of the named net: ``{"cnnkit": Timing, "torch_nchw": ...,
    "torch_channels_last": ...}``."""
    timed = dict(repeats=repeats, warmup=warmup, budget=budget)
    x, y = batch(name, seed)
    results = {"cnnkit": measure(cnnkit_train_step(cnnkit_net(name, seed), x, y), **timed)}
    for layout in LAYOUTS:
        model = cnnkit_net(name, seed)
        net = torch_net(model, channels_last=layout == "channels_last")
        check_nets(name, model, net, x, y, layout)
        step = torch_train_step(net, _to_torch(x, layout), torch.from_numpy(y))
        results[f"torch_{layout}"] = measure(step, **timed)
    return results


def time_inference(name: str, batch_size: int, *, repeats: int, warmup: int, budget: float,
                   seed: int = 0) -> dict:
    """Median eval-mode forward time of the named net on a batch of ``batch_size``:
    ``{"cnnkit": Timing, "torch_nchw": ..., "torch_channels_last": ...}``."""
    timed = dict(repeats=repeats, warmup=warmup, budget=budget)
    _, shape = batch_and_shape(name)
    x = np.random.default_rng(seed + 2).standard_normal((batch_size, *shape), dtype=np.float32)
    model = cnnkit_net(name, seed).eval()
    scores = model.forward(x)
    results = {"cnnkit": measure(lambda: model.forward(x), **timed)}
    for layout in LAYOUTS:
        net = torch_net(model, channels_last=layout == "channels_last").eval()
        x_t = _to_torch(x, layout)
        with torch.inference_mode():
            check_close(f"{name} net, eval, batch {batch_size} ({layout})", "scores", scores,
                        net(x_t).numpy())
            results[f"torch_{layout}"] = measure(lambda: net(x_t), **timed)
    return results
