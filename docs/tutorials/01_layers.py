# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Layers from first principles
#
# A convolutional net is a stack of a few kinds of layer: convolution, pooling, batch
# normalisation, a nonlinearity, a fully connected layer at the end. Each one is two functions:
# a **forward** that computes the layer's output, and a **backward** that, given how the loss
# changes with that output, says how it changes with the layer's input and weights. Training is
# nothing more than running the forwards, then the backwards in reverse order, then nudging the
# weights.
#
# This tutorial calls those functions directly, on arrays small enough to print. You will see
# the shapes every layer works in, check the fast kernels against naive loops that read like
# the formulas, and check every gradient against a numerical one, which is how you know a
# backward is right. It needs nothing but NumPy and cnnkit, and runs in a few seconds.

# %%
import os
import time

import numpy as np

import cnnkit
from cnnkit import functional as F  # the fast kernels
from cnnkit import gradcheck
from cnnkit import reference as R  # their naive loop twins

# Full scale times the fast kernel and its naive twin on a batch of 64 images instead of 4
# (about 30 s more on 2 cores); the default scale runs the whole page in a few seconds.
FULL_SCALE = os.environ.get("CNNKIT_FULL_SCALE") == "1"

np.set_printoptions(precision=3, suppress=True, linewidth=100)
rng = np.random.default_rng(0)

# %% [markdown]
# ## Shapes: NCHW
#
# Every image batch in cnnkit is a 4-D array `(N, C, H, W)`: N examples, C channels, H rows,
# W columns. A batch of two RGB photos of 32x32 pixels is `(2, 3, 32, 32)`; a batch of MNIST
# digits is `(N, 1, 28, 28)`. Convolution weights are `(F, C, KH, KW)`: F filters, each as deep
# as the input has channels, each KH x KW pixels.
#
# We start with one example of two channels, 5 rows by 6 columns. It is deliberately not
# square, so that a mix-up of height and width cannot hide.

# %%
x = rng.standard_normal((1, 2, 5, 6))      # N=1, C=2, H=5, W=6
w = rng.standard_normal((3, 2, 3, 3))      # F=3 filters of 2 channels, 3x3
b = np.array([0.0, 1.0, -1.0])             # one bias per filter
print("x", x.shape, " w", w.shape, " b", b.shape)
print(x[0, 0])                             # channel 0 of example 0: 5 rows of 6 numbers

# %% [markdown]
# ## Convolution forward
#
# Each output number is one filter's dot product with one window of the input (all channels at
# once), plus that filter's bias. The filter slides over the input with a **stride** S, after
# the input is surrounded by P rows and columns of zeros (**padding**).
#
# Every kernel in `cnnkit.functional` follows one contract: `*_forward(inputs..., settings)`
# returns `(out, cache)`, where the cache holds whatever the backward will need; and
# `*_backward(dout, cache)` returns the gradients in the order of the forward's arguments.

# %%
out, cache = F.conv2d_forward(x, w, b, stride=1, pad=1)
print("out", out.shape)
print(out[0, 0])

# %% [markdown]
# The output has one channel per filter (3) and, with padding 1 around a 3x3 filter, the same
# 5x6 size as the input. We can recompute one number by hand, straight from the definition:
# the window of the padded input under output position (row 2, column 4), times filter 0,
# summed, plus bias 0.

# %%
x_pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
i, j = 2, 4
by_hand = np.sum(x_pad[0, :, i:i + 3, j:j + 3] * w[0]) + b[0]
print(f"by hand {by_hand:.6f}   kernel {out[0, 0, i, j]:.6f}")

# %% [markdown]
# ## The size rule
#
# How large is the output? Along each axis, a window of size F on an input of size W padded by
# P on each side and moved S at a time fits in
#
# ```
# (W - F + 2P) / S + 1
# ```
#
# positions. With W = 6, F = 3, P = 1, S = 1 that is 6; with stride 2 it is 3.5, which is not a
# whole number of windows: the last window would hang off the edge. cnnkit refuses such a
# geometry rather than quietly dropping a column (pass `strict=False` to floor it the way
# PyTorch does). [The size rule](../explanation/size-rule.md) works through the cases.

# %%
out2, _ = F.conv2d_forward(x, w, b, stride=2, pad=1, strict=False)
print("stride 2, floored:", out2.shape)
try:
    F.conv2d_forward(x, w, b, stride=2, pad=1)
except ValueError as err:
    print("stride 2, strict: ", err)

# %% [markdown]
# The height works (5 - 3 + 2)/2 + 1 = 3, the width does not, and the error says which axis
# and by how much. A layer of a net raises the same error when it is built, before any data
# is seen.
#
# ## Convolution backward
#
# The backward takes `dout`, the gradient of the loss with respect to `out` (same shape as
# `out`), and returns `dx`, `dw` and `db`, each the shape of what it is the gradient of.

# %%
dout = rng.standard_normal(out.shape)
dx, dw, db = F.conv2d_backward(dout, cache)
print("dx", dx.shape, " dw", dw.shape, " db", db.shape)
print("db equals dout summed over everything but the filter axis:",
      np.allclose(db, dout.sum(axis=(0, 2, 3))))

# %% [markdown]
# Each input pixel fed every output whose window covered it, so its gradient gathers `dout`
# from all of those outputs, each weighted by the filter tap that touched the pixel. Written
# out, that is the same sliding dot product as the forward, but of the (zero-padded) `dout`
# with the filter **rotated by 180 degrees**: the backward of a convolution is a convolution
# with the flipped filter. [Convolution's backward](../explanation/conv-backward.md) derives it.
#
# ## Pooling
#
# Max pooling keeps the largest value of each window and throws the rest away; 2x2 windows
# with stride 2 halve the height and the width. Its backward sends each `dout` entry to the
# one input that won its window (the "switch" the forward recorded) and gives every other
# input zero.

# %%
p_in = rng.standard_normal((1, 1, 4, 6))
p_out, p_cache = F.max_pool2d_forward(p_in, 2)       # kernel 2, stride defaults to the kernel
print("input\n", p_in[0, 0])
print("max of each 2x2 window\n", p_out[0, 0])
p_dx = F.max_pool2d_backward(np.ones_like(p_out), p_cache)
print("gradient with dout = 1: a 1 where each window's maximum was\n", p_dx[0, 0])

# %% [markdown]
# Exactly one input per window receives the gradient, and the 1s sit where the largest value
# of each 2x2 block is. Average pooling (`F.avg_pool2d_forward`) would instead spread each
# `dout` evenly, a quarter to each of the four inputs.
#
# ## Batch normalisation
#
# Batch norm makes each channel have mean 0 and variance 1 over the batch, then scales and
# shifts it by learned `gamma` and `beta`. On an `(N, C, H, W)` array it normalises each channel
# over all N*H*W of its values (the *spatial* batch norm).

# %%
bn_in = 3.0 + 2.0 * rng.standard_normal((4, 2, 3, 5))   # mean 3, std 2 per channel
gamma, beta = np.ones(2), np.zeros(2)
bn_out, bn_cache = F.spatial_batchnorm_forward(bn_in, gamma, beta)
print("per channel before: mean", bn_in.mean(axis=(0, 2, 3)), " std", bn_in.std(axis=(0, 2, 3)))
print("per channel after:  mean", bn_out.mean(axis=(0, 2, 3)), " std", bn_out.std(axis=(0, 2, 3)))
bn_dx, bn_dgamma, bn_dbeta = F.spatial_batchnorm_backward(rng.standard_normal(bn_out.shape),
                                                          bn_cache)
print("dx", bn_dx.shape, " dgamma", bn_dgamma.shape, " dbeta", bn_dbeta.shape)

# %% [markdown]
# After the forward each channel's mean is 0 and its standard deviation is 1 (up to the small
# `eps` added to the variance). The backward is the subtle one: every output depends on every
# input of its channel through the batch mean and variance, so `dx` has two correction terms
# besides `gamma * dout / std`. [Batch norm's backward](../explanation/batchnorm-backward.md)
# derives the compact formula the kernel uses.
#
# ## The naive twins
#
# The fast kernels are fast because they are rearranged: convolution copies every window into
# a column of a matrix (im2col) and does one matrix product; the backward adds columns back
# (col2im). That is hard to read. `cnnkit.reference` holds the same functions written as loops
# that follow the formulas one line at a time, with the same names, arguments and return
# values. Run both on the same input and compare:

# %%
def max_difference(fast, naive):
    """The largest absolute difference between two tuples of arrays (None entries skipped),
    as text."""
    largest = max(float(np.max(np.abs(a - b))) for a, b in zip(fast, naive) if a is not None)
    return f"{largest:.1e}"


def conv_pair(kernels, x, w, b):
    """Forward and backward of one kernel family on the same input and dout."""
    out, cache = kernels.conv2d_forward(x, w, b, stride=1, pad=1)
    return (out, *kernels.conv2d_backward(dout, cache))


def pool_pair(kernels, x):
    out, cache = kernels.max_pool2d_forward(x, 2)
    return out, kernels.max_pool2d_backward(np.ones_like(out), cache)


def bn_pair(kernels, x):
    out, cache = kernels.spatial_batchnorm_forward(x, gamma, beta)
    return (out, *kernels.spatial_batchnorm_backward(np.cos(out), cache))


print("conv       max |fast - naive| =", max_difference(conv_pair(F, x, w, b),
                                                      conv_pair(R, x, w, b)))
print("max pool   max |fast - naive| =", max_difference(pool_pair(F, p_in), pool_pair(R, p_in)))
print("batch norm max |fast - naive| =", max_difference(bn_pair(F, bn_in), bn_pair(R, bn_in)))

# %% [markdown]
# The differences are zero or a few units of the last digit of float64 (about 1e-16 to 1e-15):
# the two versions add the same numbers in a different order, and floating-point addition is
# not associative. The reference versions are what the fast ones are tested against.
#
# Why not always use the readable version? Time both on a more realistic size: a batch of
# 32x32 images with 3 channels and 16 filters of 5x5, forward and backward.

# %%
batch = 64 if FULL_SCALE else 4
big_x = rng.standard_normal((batch, 3, 32, 32))
big_w = 0.1 * rng.standard_normal((16, 3, 5, 5))
big_b = np.zeros(16)


def seconds(kernels, repeats=3):
    """Wall-clock time of one conv forward and backward on the larger batch (best of a few:
    the fastest run is the one least disturbed by whatever else the machine is doing)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out, cache = kernels.conv2d_forward(big_x, big_w, big_b, pad=2)
        kernels.conv2d_backward(np.ones_like(out), cache)
        times.append(time.perf_counter() - start)
    return min(times)


fast, naive = seconds(F), seconds(R)
print(f"batch {batch}: fast {fast * 1e3:.1f} ms, naive {naive * 1e3:.0f} ms, "
      f"naive / fast = {naive / fast:.0f}x")

# %% [markdown]
# The loops are slower by a factor of a hundred or more (the exact factor depends on the
# machine, the sizes and what else the machine is doing): each output number costs a
# Python-level loop iteration, while im2col hands all of them to one matrix product that runs
# in compiled, cache-friendly code. The naive version is for reading and for testing; the
# fast one for training.
#
# ## Checking a gradient numerically
#
# How do we know a backward is right? The derivative of a function f at x can be estimated by
# nudging x a little either way:
#
# ```
# df/dx  ~=  (f(x + h) - f(x - h)) / (2h)         (centred difference, error of order h^2)
# ```
#
# A layer's output is an array, not a number, so we check the scalar `sum(out * dout)` for a
# random `dout`: its gradient with respect to the input is exactly what the backward computes.
# `gradcheck.numerical_gradient_array` does this one input element at a time (two forwards per
# element, so only on small arrays), and `gradcheck.rel_error` compares the two answers:

# %%
def conv_out(x_):
    return F.conv2d_forward(x_, w, b, stride=1, pad=1)[0]


numeric_dx = gradcheck.numerical_gradient_array(conv_out, x.copy(), dout)
print(f"relative error of dx: {gradcheck.rel_error(dx, numeric_dx):.1e}")

# %% [markdown]
# How to read the number: the relative error is `||analytic - numeric|| / (||analytic|| +
# ||numeric||)`. In float64 a correct backward gives something around 1e-8 or smaller (the
# numerical estimate's own error); anything near 1e-2 or above means a bug. Always check in
# float64: float32 keeps only about 7 significant digits, and dividing a difference of two
# nearly equal losses by 2h = 2e-5 leaves too few of them to compare.
#
# `gradcheck.check_kernel` does this for every gradient a backward returns, given the forward,
# the backward, the inputs and the forward's settings:

# %%
checks = {
    "conv2d (stride 2, pad 1)": gradcheck.check_kernel(
        F.conv2d_forward, F.conv2d_backward, [x, w, b], rng=rng, stride=2, pad=1, strict=False),
    "max_pool2d 2x2": gradcheck.check_kernel(
        F.max_pool2d_forward, F.max_pool2d_backward, [p_in], rng=rng, kernel=2),
    "spatial_batchnorm": gradcheck.check_kernel(
        F.spatial_batchnorm_forward, F.spatial_batchnorm_backward,
        [bn_in, rng.standard_normal(2), rng.standard_normal(2)], rng=rng),
}
for name, errors in checks.items():
    print(f"{name:26}", "  ".join(f"{k} {v:.1e}" for k, v in errors.items()))

# %% [markdown]
# Every gradient of every layer agrees with its numerical estimate to about 1e-9 or better:
# each backward is right.
#
# ## What a wrong backward looks like
#
# A check is only useful if you know what failure looks like. Here is a classic mistake:
# computing conv's `dx` with the filter as it is, **not rotated** by 180 degrees. We make that
# broken backward by handing the real one a cache whose filter is flipped in advance (the
# cache is the tuple the forward returned; its second entry is the filter), so the two flips
# cancel. `dw` and `db` do not depend on the filter and stay correct.

# %%
def conv_backward_unflipped(dout_, cache_):
    """conv2d_backward with the classic bug: dx correlates dout with the unrotated filter."""
    x_, w_, *rest = cache_
    dx_, _, _ = F.conv2d_backward(dout_, (x_, w_[:, :, ::-1, ::-1], *rest))
    _, dw_, db_ = F.conv2d_backward(dout_, cache_)
    return dx_, dw_, db_


broken = gradcheck.check_kernel(F.conv2d_forward, conv_backward_unflipped, [x, w, b], rng=rng,
                                pad=1)
print("  ".join(f"{k} {v:.1e}" for k, v in broken.items()))

# %% [markdown]
# `dx`'s relative error is now of order 1 (the two answers barely resemble each other), while
# `dw` and `db` still pass: the check not only says that something is wrong but **which
# gradient**, which narrows the search to the code that computes `dx`.
#
# A second classic: batch norm's backward written as if the batch mean and variance were
# constants, `dx = gamma * dout / std`. It forgets that moving one input moves the mean and
# the variance, and so every output of its channel.

# %%
def batchnorm_backward_constant_stats(dout_, cache_):
    """The batch-norm backward that treats the batch statistics as constants (wrong)."""
    _, dgamma_, dbeta_ = F.spatial_batchnorm_backward(dout_, cache_)
    per_channel = (cache_.gamma * cache_.invstd)[None, :, None, None]   # gamma / std
    return per_channel * dout_, dgamma_, dbeta_


broken_bn = gradcheck.check_kernel(F.spatial_batchnorm_forward, batchnorm_backward_constant_stats,
                                   [bn_in, np.ones(2), np.zeros(2)], rng=rng)
print("  ".join(f"{k} {v:.1e}" for k, v in broken_bn.items()))

# %% [markdown]
# This error is smaller, of order 1e-2 to 1e-1 rather than 1, because the missing terms are
# corrections (they are exactly what keeps each channel's gradient summing to zero), but it is
# still many orders of magnitude larger than a correct backward's. There is no grey zone in
# float64: around 1e-8 or below is right, 1e-3 or above is a bug.
#
# ## Checking a whole model
#
# A net whose layers all pass can still be wired wrong: a layer's gradient passed to the wrong
# neighbour, a parameter never updated, a regularisation term forgotten. `gradcheck.check_model`
# checks the net as a whole: for every parameter it compares the gradient that backpropagation
# leaves in `p.grad` with centred differences of the loss itself. Here a small net in the
# notes' pattern notation, on a non-square 8x6 input, with batch norm, in float64:

# %%
model, shape = cnnkit.models.build_model(
    "INPUT[1x8x6] -> CONV3-4 -> BN -> RELU -> POOL2 -> FC-10 -> RELU -> FC-3", rng=rng)
model.astype(np.float64)
xs = rng.standard_normal((5, *shape))                  # 5 examples of (1, 8, 6)
ys = rng.integers(0, 3, 5)                             # their classes
errors = gradcheck.check_model(model, xs, ys, "softmax", reg=0.1, rng=rng)
shapes = {name: p.shape for name, p in model.named_parameters()}
for name, err in errors.items():
    print(f"{name:12} {shapes[name]!s:12} relative error {err:.1e}")

# %% [markdown]
# Every parameter checks out, including the L2 regularisation term (`reg=0.1`), which the
# check adds to both sides. Parameters are named by the layer's position and their role:
# `0.weight` is the conv's filters, `1.weight` and `1.bias` are batch norm's `gamma` and
# `beta`. The conv's bias is missing on purpose: a conv followed by batch norm has none, since
# batch norm subtracts any constant the bias would add.
#
# `gradcheck.check_named_model` wraps the same check for a zoo name or a spec and prints the
# table the `cnnkit gradcheck` command shows:

# %%
report = gradcheck.check_named_model("convnet-check", batch=3, seed=0)
print("\n".join(report.lines()))

# %% [markdown]
# The zoo's `convnet-check` keeps a bias on the conv before batch norm, and the check shows
# why the spec leaves it out: that bias's gradient is exactly zero. This net has dropout as
# well; the check holds the dropout mask fixed between the two forwards of each centred
# difference, otherwise the loss would jump by far more than the nudge and the check would be
# meaningless.
#
# ## Where next
#
# - [The course's path](02_course_path.py) puts these layers together into the course's
#   three-layer convnet and trains it on MNIST.
# - [Convolution's backward](../explanation/conv-backward.md),
#   [batch norm's backward](../explanation/batchnorm-backward.md) and
#   [the size rule](../explanation/size-rule.md) derive what this page used.
