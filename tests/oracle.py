"""PyTorch as the oracle: the only file in the project that knows torch's argument names.

Every wrapper takes our arrays and our hyperparameter names (``pad``, ``kernel``, ``w`` as
(D_in, D_out) for affine, batch-norm momentum 0.9 meaning "keep 90% of the old value") and returns
NumPy arrays: the forward output and the gradient of ``sum(out * dout)`` with respect to every
array input (``None`` for inputs that are ``None``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as tF

torch.set_num_threads(1)  # tiny float64 problems; threads only add noise to the suite's time


def _tensor(a, grad=True):
    if a is None:
        return None
    t = torch.from_numpy(np.array(a, copy=True))
    if grad and t.is_floating_point():
        t.requires_grad_(True)
    return t


def vjp(fn, arrays, dout=None):
    """Run ``fn(*tensors)``; return ``(out, [d_input...])`` as NumPy (grads of sum(out*dout))."""
    tensors = [_tensor(a) for a in arrays]
    out = fn(*tensors)
    grads = [None] * len(tensors)
    if dout is not None:
        out.backward(torch.from_numpy(np.asarray(dout, dtype=np.asarray(arrays[0]).dtype)))
        grads = [None if t is None or t.grad is None else t.grad.numpy() for t in tensors]
    return out.detach().numpy(), grads


def affine(x, w, b, dout=None):
    """out = x.reshape(N, -1) @ w + b, with our w (D_in, D_out) -> torch's (out, in)."""
    return vjp(lambda x, w, b: tF.linear(x.reshape(x.shape[0], -1), w.T, b), [x, w, b], dout)


def conv2d(x, w, b, stride, pad, dilation, dout=None):
    return vjp(lambda x, w, b: tF.conv2d(x, w, b, stride=stride, padding=pad, dilation=dilation),
               [x, w, b], dout)


def max_pool2d(x, kernel, stride, pad=0, dout=None):
    return vjp(lambda x: tF.max_pool2d(x, kernel, stride, padding=pad), [x], dout)


def avg_pool2d(x, kernel, stride, pad=0, dout=None):
    return vjp(lambda x: tF.avg_pool2d(x, kernel, stride, padding=pad, count_include_pad=True),
               [x], dout)


def l2_pool2d(x, kernel, stride, dout=None):
    return vjp(lambda x: tF.lp_pool2d(x, 2, kernel, stride), [x], dout)


def global_avg_pool2d(x, dout=None):
    return vjp(lambda x: tF.adaptive_avg_pool2d(x, 1), [x], dout)


def relu(x, dout=None):
    return vjp(torch.relu, [x], dout)


def sigmoid(x, dout=None):
    return vjp(torch.sigmoid, [x], dout)


def tanh(x, dout=None):
    return vjp(torch.tanh, [x], dout)


def leaky_relu(x, negative_slope, dout=None):
    return vjp(lambda x: tF.leaky_relu(x, negative_slope), [x], dout)


def batchnorm_train(x, gamma, beta, running_mean, running_var, momentum, eps, dout=None):
    """Train-mode batch norm (2-D or 4-D x). Returns (out, [dx, dgamma, dbeta], (mean, var)).

    Our momentum keeps ``momentum`` of the old running value; torch's keeps ``1 - momentum``.
    """
    rm = torch.from_numpy(np.array(running_mean, copy=True))
    rv = torch.from_numpy(np.array(running_var, copy=True))
    out, grads = vjp(lambda x, g, b: tF.batch_norm(x, rm, rv, g, b, training=True,
                                                   momentum=1.0 - momentum, eps=eps),
                     [x, gamma, beta], dout)
    return out, grads, (rm.numpy(), rv.numpy())


def batchnorm_eval(x, gamma, beta, running_mean, running_var, eps, dout=None):
    rm = torch.from_numpy(np.array(running_mean, copy=True))
    rv = torch.from_numpy(np.array(running_var, copy=True))
    return vjp(lambda x, g, b: tF.batch_norm(x, rm, rv, g, b, training=False, eps=eps),
               [x, gamma, beta], dout)


def layer_norm(x, normalized_shape, gamma, beta, eps, dout=None):
    return vjp(lambda x, g, b: tF.layer_norm(x, tuple(normalized_shape), g, b, eps),
               [x, gamma, beta], dout)


def group_norm(x, groups, gamma, beta, eps, dout=None):
    if gamma is None and beta is not None:
        # torch's backward fails ("tensor does not have a device") with a bias and no weight:
        # a weight of ones is the same function, and its gradient is left out
        ones = np.ones_like(beta)
        out, (dx, _, dbeta) = vjp(lambda x, g, b: tF.group_norm(x, groups, g, b, eps),
                                  [x, ones, beta], dout)
        return out, [dx, None, dbeta]
    return vjp(lambda x, g, b: tF.group_norm(x, groups, g, b, eps), [x, gamma, beta], dout)


def norm_module_repr(kind, *args, **kwargs):
    """repr of torch.nn.LayerNorm or GroupNorm (``kind``) built with these arguments."""
    return repr(getattr(torch.nn, kind)(*args, **kwargs))


def locally_connected2d(x, w, b, stride, pad, dilation, dout=None):
    """Locally connected layer through unfold: our w is (H_out, W_out, F, C, KH, KW), b (F, H_out, W_out)."""
    h_out, w_out, f = w.shape[:3]

    def fn(x, w, b):
        kh, kw = w.shape[-2:]
        cols = tF.unfold(x, (kh, kw), dilation=dilation, padding=pad, stride=stride)  # (N, C*KH*KW, L)
        wl = w.reshape(h_out * w_out, f, -1)                                          # (L, F, C*KH*KW)
        out = torch.einsum("nkl,lfk->nfl", cols, wl).reshape(x.shape[0], f, h_out, w_out)
        return out if b is None else out + b
    return vjp(fn, [x, w, b], dout)


def softmax_loss(scores, y):
    """Mean cross-entropy; returns (loss, dscores)."""
    s = _tensor(scores)
    loss = tF.cross_entropy(s, torch.from_numpy(np.asarray(y, dtype=np.int64)))
    loss.backward()
    return loss.item(), s.grad.numpy()


def svm_loss(scores, y, margin=1.0):
    """CS231n's multiclass SVM, mean over the batch: torch's multi_margin_loss also divides by C."""
    s = _tensor(scores)
    loss = tF.multi_margin_loss(s, torch.from_numpy(np.asarray(y, dtype=np.int64)),
                                margin=margin) * s.shape[1]
    loss.backward()
    return loss.item(), s.grad.numpy()


# ---------------------------------------------------------------------------- optimizers

_TORCH_OPTIM = {"SGD": torch.optim.SGD, "Adagrad": torch.optim.Adagrad,
                "RMSProp": torch.optim.RMSprop, "Adam": torch.optim.Adam}


def optimizer_trajectory(name, hyper, init, grads, *, weight_decay=0.0, max_grad_norm=None):
    """Parameters after each of torch's steps of optimizer ``name`` (our class name).

    ``hyper`` are torch's keyword arguments (lr, momentum, nesterov, betas, alpha, eps).
    ``weight_decay`` goes to the >= 2-D parameters only (DESIGN.md: weights, not biases), so the
    1-D ones sit in a second group with weight_decay=0; ``max_grad_norm`` applies
    clip_grad_norm_ before each step. Returns (trajectory, total norms before clipping).
    """
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    groups = [{"params": [t for t in tensors.values() if t.ndim >= 2],
               "weight_decay": weight_decay},
              {"params": [t for t in tensors.values() if t.ndim < 2], "weight_decay": 0.0}]
    opt = _TORCH_OPTIM[name](groups, **hyper)
    trajectory, norms = [], []
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        if max_grad_norm is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(list(tensors.values()),
                                                              max_grad_norm)))
        opt.step()
        trajectory.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return trajectory, norms


def _scheduler(opt, kind, kw):
    """Our schedule ``kind`` and arguments as torch's lr_scheduler."""
    sched = torch.optim.lr_scheduler
    if kind == "step":
        return sched.StepLR(opt, step_size=kw["step_size"], gamma=kw["gamma"])
    if kind == "exponential":
        return sched.ExponentialLR(opt, gamma=kw["gamma"])
    if kind == "cosine":
        return sched.CosineAnnealingLR(opt, T_max=kw["t_max"], eta_min=kw.get("eta_min", 0.0))
    if kind == "warmup":                  # a linear ramp, multiplied into the `after` schedule
        ramp = sched.LinearLR(opt, start_factor=kw["start_factor"],
                              total_iters=kw["warmup_epochs"])
        if kw.get("after") is None:
            return ramp
        return sched.ChainedScheduler([ramp, _scheduler(opt, *kw["after"])])
    raise ValueError(f"no torch schedule for {kind!r}")


def schedule_lrs(base_lr, kind, kw, epochs):
    """Learning rates of epochs 0..epochs under torch's equivalent of our schedule ``kind``.

    ``kw`` holds our arguments; for "warmup", ``after`` is an optional (kind, kw) pair.
    """
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    sched = _scheduler(opt, kind, kw)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(epochs):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


# ---------------------------------------------------------------------------- grouped conv, LRN

def conv2d_grouped(x, w, b, stride, pad, dilation, groups, dout=None):
    """Grouped conv: our w (F, C // groups, KH, KW) is torch's weight layout as it is."""
    return vjp(lambda x, w, b: tF.conv2d(x, w, b, stride=stride, padding=pad, dilation=dilation,
                                         groups=groups), [x, w, b], dout)


def conv2d_state_shapes(in_channels, out_channels, kernel_size, groups=1, bias=True):
    """``{name: shape}`` of a ``torch.nn.Conv2d``'s state dict."""
    m = torch.nn.Conv2d(in_channels, out_channels, kernel_size, groups=groups, bias=bias)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def local_response_norm(x, size, alpha, beta, k, dout=None):
    return vjp(lambda x: tF.local_response_norm(x, size, alpha=alpha, beta=beta, k=k), [x], dout)


def local_response_norm_repr(size, alpha, beta, k):
    return repr(torch.nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k))


# ---------------------------------------------------------------------------- more layers

def prelu(x, w, dout=None):
    """PReLU with our w (C,) or (1,): torch's weight layout as it is."""
    return vjp(tF.prelu, [x, w], dout)


def flatten(x, dout=None):
    return vjp(lambda x: torch.flatten(x, 1), [x], dout)


def dropout_eval(x, p, dout=None):
    """Dropout in eval mode (upscale_in_train: the identity), as torch's."""
    return vjp(lambda x: tF.dropout(x, p, training=False), [x], dout)


def zero_pad_shortcut(x, stride, extra, dout=None):
    """Option-A shortcut: subsample by the stride, append ``extra`` zero channels."""
    return vjp(lambda x: tF.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, 0, extra)), [x], dout)
