"""PyTorch twins of cnnkit.nn modules, for the oracle tests of the module tier.

``to_torch(model)`` builds the equivalent ``torch.nn`` module tree, float64, with OUR state dict
loaded by ``load_state_dict(strict=True)``: the names and shapes match by construction, so a
mismatch fails there. ``run_torch`` gives the output and the gradients of ``sum(out * dout)``.
This file and ``tests/oracle.py`` are the only places that know torch's argument names.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as tF

from cnnkit import nn

torch.set_num_threads(1)


class FlatLinear(torch.nn.Linear):
    """``torch.nn.Linear`` on inputs flattened per example, as our Linear (the affine kernel)."""

    def forward(self, x):
        return super().forward(x.flatten(1))


class LocallyConnected2d(torch.nn.Module):
    """Our locally connected layer through unfold; ``weight`` (H_out, W_out, F, C, KH, KW),
    ``bias`` (F, H_out, W_out), the names and shapes of ours."""

    def __init__(self, m: nn.LocallyConnected2d):
        super().__init__()
        self.kwargs = dict(kernel_size=m.kernel_size, dilation=m.dilation, padding=m.padding,
                           stride=m.stride)
        self.weight = torch.nn.Parameter(torch.zeros(m.weight.shape))
        self.bias = None if m.bias is None else torch.nn.Parameter(torch.zeros(m.bias.shape))

    def forward(self, x):
        h_out, w_out, f = self.weight.shape[:3]
        cols = tF.unfold(x, **self.kwargs)                       # (N, C*KH*KW, L)
        wl = self.weight.reshape(h_out * w_out, f, -1)            # (L, F, C*KH*KW)
        out = torch.einsum("nkl,lfk->nfl", cols, wl).reshape(x.shape[0], f, h_out, w_out)
        return out if self.bias is None else out + self.bias


class Residual(torch.nn.Module):
    """``body(x) + shortcut(x)``, identity shortcut when None; children named as ours."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class Concat(torch.nn.Module):
    """Branches on the same input, concatenated along the channels; children "0", "1", ..."""

    def __init__(self, branches):
        super().__init__()
        for i, branch in enumerate(branches):
            self.add_module(str(i), branch)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.children()], dim=1)


class ZeroPadShortcut(torch.nn.Module):
    """Option-A shortcut: subsample by the stride, append zero channels (torch's pad)."""

    def __init__(self, m: nn.ZeroPadShortcut):
        super().__init__()
        self.stride, self.extra = m.stride, m.out_channels - m.in_channels

    def forward(self, x):
        return tF.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))


def _convert(m):
    if isinstance(m, nn.Sequential):
        return torch.nn.Sequential(*(_convert(c) for c in m))
    if isinstance(m, nn.Concat):
        return Concat([_convert(c) for c in m])
    if isinstance(m, nn.ZeroPadShortcut):
        return ZeroPadShortcut(m)
    if type(m).__name__ == "LocalResponseNorm":
        return torch.nn.LocalResponseNorm(m.size, m.alpha, m.beta, m.k)
    if isinstance(m, nn.Residual):
        return Residual(_convert(m.body), None if m.shortcut is None else _convert(m.shortcut))
    if isinstance(m, nn.Linear):
        return FlatLinear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, nn.Conv2d):
        return torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                               padding=m.padding, dilation=m.dilation, bias=m.bias is not None,
                               groups=getattr(m, "groups", 1))
    if isinstance(m, nn.LocallyConnected2d):
        return LocallyConnected2d(m)
    if isinstance(m, nn.MaxPool2d):
        return torch.nn.MaxPool2d(m.kernel_size, m.stride, m.padding)
    if isinstance(m, nn.AvgPool2d):
        return torch.nn.AvgPool2d(m.kernel_size, m.stride, m.padding, count_include_pad=True)
    if isinstance(m, nn.L2Pool2d):
        return torch.nn.LPPool2d(2, m.kernel_size, m.stride)
    if isinstance(m, nn.GlobalAvgPool2d):
        return torch.nn.AdaptiveAvgPool2d(1)
    if isinstance(m, nn.LeakyReLU):
        return torch.nn.LeakyReLU(m.negative_slope)
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        cls = torch.nn.BatchNorm1d if isinstance(m, nn.BatchNorm1d) else torch.nn.BatchNorm2d
        # Our momentum keeps that fraction of the old running value; torch's is the other one.
        return cls(m.num_features, eps=m.eps, momentum=1.0 - m.momentum)
    if isinstance(m, nn.LayerNorm):
        return torch.nn.LayerNorm(m.normalized_shape, eps=m.eps,
                                  elementwise_affine=m.elementwise_affine, bias=m.has_bias)
    if isinstance(m, nn.GroupNorm):
        return torch.nn.GroupNorm(m.num_groups, m.num_channels, eps=m.eps, affine=m.affine,
                                  bias=m.has_bias)
    if isinstance(m, nn.Dropout) and m.mode == "upscale_in_train":
        return torch.nn.Dropout(m.p)
    simple = {nn.ReLU: torch.nn.ReLU, nn.Sigmoid: torch.nn.Sigmoid, nn.Tanh: torch.nn.Tanh,
              nn.Flatten: torch.nn.Flatten}
    if type(m) in simple:
        return simple[type(m)]()
    raise NotImplementedError(f"no torch twin for {type(m).__name__}")


def to_torch(model: nn.Module) -> torch.nn.Module:
    """The float64 torch twin of ``model`` holding its state dict, in the same train/eval mode."""
    twin = _convert(model).double()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()},
                         strict=True)
    return twin.train(model.training)


def run_torch(twin: torch.nn.Module, x: np.ndarray, dout: np.ndarray):
    """Forward and backward of ``sum(out * dout)``: (out, dx, {param name: grad})."""
    xt = torch.from_numpy(np.array(x, dtype=np.float64)).requires_grad_(True)
    out = twin(xt)
    out.backward(torch.from_numpy(np.asarray(dout, dtype=np.float64)))
    grads = {name: p.grad.numpy() for name, p in twin.named_parameters()}
    return out.detach().numpy(), xt.grad.numpy(), grads


def state(twin: torch.nn.Module) -> dict:
    """The twin's state dict as NumPy arrays (buffers included)."""
    return {k: v.detach().numpy() for k, v in twin.state_dict().items()}


# ----------------------------------------------------------------------------- our side

def perturb(model: nn.Module, rng) -> nn.Module:
    """Random parameters and running statistics (ones and zeros would hide a swapped gamma and
    beta or a dropped bias); running_var stays positive. Returns the model."""
    for _, p in model.named_parameters():
        p.data = rng.standard_normal(p.shape).astype(p.dtype)
    for _, m in model.named_modules():
        for name, b in list(m._buffers.items()):
            if name == "running_mean":
                m.running_mean = rng.standard_normal(b.shape).astype(b.dtype)
            elif name == "running_var":
                m.running_var = rng.uniform(0.5, 2.0, b.shape).astype(b.dtype)
    return model


def grads(model: nn.Module) -> dict:
    return {name: p.grad.copy() for name, p in model.named_parameters()}


def run_ours(model: nn.Module, x: np.ndarray, rng):
    """Forward, then backward of a random dout: (out, dout, dx, {param name: grad})."""
    model.zero_grad()
    out = model(x)
    dout = rng.standard_normal(out.shape)
    dx = model.backward(dout)
    return out, dout, dx, grads(model)


def compare_with_torch(model: nn.Module, x: np.ndarray, rng, assert_close) -> None:
    """Our float64 model and its torch twin: same output, input gradient, parameter gradients
    and state after the step (running statistics)."""
    twin = to_torch(model)
    out, dout, dx, ours = run_ours(model, x, rng)
    t_out, t_dx, theirs = run_torch(twin, x, dout)
    assert_close(out, t_out, "out")
    assert_close(dx, t_dx, "dx")
    assert list(ours) == list(theirs), "parameter names"
    for name in ours:
        assert_close(ours[name], theirs[name], f"grad {name}")
    t_state = state(twin)
    assert list(model.state_dict()) == list(t_state), "state_dict keys"
    for name, value in model.state_dict().items():
        assert_close(value, t_state[name], f"state {name}")
