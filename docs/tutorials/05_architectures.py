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
# # Architectures
#
# A convolutional net is a choice: which layers, in what order, how many filters, where to
# pool. The CS231n notes describe these choices with a one-line pattern such as
# `INPUT -> [[CONV -> RELU]*2 -> POOL]*3 -> FC`, and reason about a net by counting: the volume
# after every layer, the parameters each layer holds, the memory a forward pass needs.
#
# cnnkit reads that pattern directly. This tutorial writes a few nets in it, looks at what they
# cost, walks through the zoo of published architectures, rebuilds the notes' VGG-16 memory
# table, and finally turns a trained net's fully connected layers into convolutions so it
# slides over an image larger than the one it was trained on.
#
# You need nothing but cnnkit; the digits come from the MNIST copy inside the package.

# %%
import os
import re
import time

import numpy as np

import cnnkit
from cnnkit import convert, data, nn, summary
from cnnkit.models import spec, zoo

# Default scale: the FC -> conv net trains on 6,000 digits for 3 epochs (the whole page runs
# in about 15 s on 2 cores). Full scale (CNNKIT_FULL_SCALE=1): all 60,000 digits for 5 epochs,
# about a minute on 2 cores, for a sharper score map.
FULL_SCALE = os.environ.get("CNNKIT_FULL_SCALE") == "1"
TRAIN_IMAGES, EPOCHS = (60_000, 5) if FULL_SCALE else (6_000, 3)

# %% [markdown]
# ## The spec notation
#
# Why a notation? Because the interesting facts about a net (how the volume shrinks, where the
# parameters are) follow from its layer list alone, and a one-line list is easy to write, read
# and change. Each token is a layer: `CONV3-16` is a 3x3 convolution with 16 filters (stride 1,
# padded to keep the size), `POOL2` a 2x2 max pool with stride 2, `FC-64` a fully connected
# layer with 64 outputs, `[...]*N` repeats a group. `INPUT[1x28x28]` gives the volume the net
# takes, channels first.
#
# `spec.trace` follows the volume through the layers without building anything:

# %%
text = "INPUT[1x28x28] -> [[CONV3-16 -> RELU]*2 -> POOL2]*2 -> FC-64 -> RELU -> FC-10"
for step in spec.trace(text):
    print(f"{step.index:>2}  {step.token:<10} {step.input} -> {step.output}")

# %% [markdown]
# Notice that the 3x3 convolutions keep 28x28 (their padding of 1 makes the size rule
# `(W - F + 2P)/S + 1 = (28 - 3 + 2)/1 + 1 = 28`), and only the pools halve the height and
# width. The first `FC` flattens the last volume, 16x7x7, into a vector.
#
# `spec.build` makes the net, a plain `nn.Sequential`, and `summary` counts what it costs:

# %%
net = spec.build(text, rng=np.random.default_rng(0))
costs = summary.summarize(net, (1, 28, 28))
print(f"{'layer':<6}{'label':<10}{'output':>10}{'activations':>13}{'params':>9}{'MACs':>12}")
print(f"{'input':<6}{'INPUT':<10}{'1x28x28':>10}{costs.input_activations:>13,}{0:>9}{0:>12}")
for row in costs.rows:
    added = "in place" if row.in_place else f"{row.activations:,}"
    shape = "x".join(map(str, row.out_shape))
    print(f"{row.name:<6}{row.label:<10}{shape:>10}{added:>13}{row.params:>9,}{row.macs:>12,}")

# the totals and the training estimate, as `cnnkit summary` prints them under its table
table = summary.format_layers(costs).splitlines()
last_rule = max(i for i, line in enumerate(table) if line and set(line) == {"-"})
print("\n".join(table[last_rule + 1:]))

# %% [markdown]
# Read the columns from left to right: the layer and its label in the notation, its output
# volume (channels x height x width), the activations it adds (ReLU runs in place, so it adds
# none), its parameters and its multiply-adds (MACs) per image. `cnnkit summary MODEL` prints
# the same table.
# Notice where the parameters sit: the convolutions' filters are small (a 3x3x16 filter is 144
# weights), while the first fully connected layer connects every one of the 784 values of the
# last volume to each of its 64 outputs. The last lines estimate the memory of training at
# batch 1, the way the notes do: activations and their gradients, the weights with their
# gradients and Adam's two caches, and the largest im2col matrix.
#
# A spec that breaks the size rule is refused before anything is built, and the error points
# at the token:

# %%
try:
    spec.build("INPUT[1x28x28] -> CONV5-6 -> POOL3 -> FC-10")
except spec.SpecError as error:
    print(error)

# %% [markdown]
# A 3x3 pool with stride 3 does not tile 28 pixels, and the message says which layer, which
# numbers and what to change. The command line prints the same line for
# `cnnkit train --model "..."`.
#
# ## The layer pattern
#
# The notes observe that most convnets follow one pattern:
#
# ```
# INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC
# ```
#
# with `N` usually at most 3, `K` below 3, and `POOL?` an optional pool. A function that
# writes the pattern for given `N`, `M`, `K` lets us compare a few nets side by side:

# %%
def pattern(n, m, k, width=32, fc=128):
    """The notes' pattern as a spec for a 1x28x28 input (POOL2 after each block)."""
    blocks = f"[[CONV3-{width} -> RELU]*{n} -> POOL2]*{m}"
    head = f" -> [FC-{fc} -> RELU]*{k}" if k else ""
    return f"INPUT[1x28x28] -> {blocks}{head} -> FC-10"


print("for example N, M, K = 2, 2, 1:\n  " + spec.describe(pattern(2, 2, 1)))
print(f"{'N M K':<7}{'params':>10}{'activations':>13}{'MACs':>13}")
for n, m, k in [(1, 1, 1), (1, 2, 1), (2, 2, 1), (3, 2, 1), (2, 2, 2)]:
    with nn.shapes_only():                       # count without drawing any weights
        s = summary.summarize(spec.build(pattern(n, m, k)), (1, 28, 28))
    print(f"{n} {m} {k}  {s.params:>10,}{s.activations:>13,}{s.macs:>13,}")

# %% [markdown]
# Notice how the knobs pull in different directions. A second pool (`M` from 1 to 2) shrinks
# the volume the first fully connected layer sees by four, and with it the parameters. More
# convolutions per block (`N`) add few parameters but many multiply-adds, because each one runs
# over the whole image. `nn.shapes_only()` builds a net without allocating its weights, which
# is how the counts above cost nothing.
#
# Why stack small filters instead of using one large one? Three 3x3 convolutions in a row see
# a 7x7 patch of the input, as one 7x7 convolution does, with fewer weights and two more
# nonlinearities:

# %%
for text in ["INPUT[64x32x32] -> CONV7-64", "INPUT[64x32x32] -> [CONV3-64 -> RELU]*3"]:
    with nn.shapes_only():
        s = summary.summarize(spec.build(text), (64, 32, 32))
    print(f"{text:<42} {s.params:>8,} parameters  {s.macs:>12,} MACs")

# %% [markdown]
# The three 3x3 layers hold roughly half the parameters of the single 7x7 one (27 C^2 weights
# against 49 C^2 for C channels in and out), and cost about half the arithmetic.
#
# ## The zoo
#
# The nets the notes study as case studies are built in `cnnkit.models.zoo`, each at the input
# size it was designed for. Each builder's docstring writes the architecture in the notation
# above and says where its parameter count is published. A line each:

# %%
def about(name):
    """What a zoo model is, shortly: its builder's first docstring line without the details,
    and the paper's authors and year."""
    line = zoo.MODELS[name][0].__doc__.splitlines()[0].replace("``", "")
    what = re.split(r" on | for |,|:", re.sub(r" \([^)]*\)", "", line))[0].rstrip(".")
    cite = re.search(r"([A-Z]\w+(?: et al\.|(?:, [A-Z]\w+)*,? & [A-Z]\w+)?) ((?:19|20)\d\d)", line)
    if not cite:
        return what
    authors = cite[1] if "," not in cite[1] else cite[1].split(",")[0] + " et al."
    return f"{what} ({authors} {cite[2]})"


print(f"{'name':<20}{'input':<10}{'params':>12}{'MACs':>6}   what it is")
for name in zoo.model_names():
    shape = zoo.input_shape_of(name)
    with nn.shapes_only():
        s = summary.summarize(zoo.get_model(name), shape)
    size = "x".join(map(str, shape))
    print(f"{name:<20}{size:<10}{s.params:>12,}{summary.abbreviate(s.macs):>6}   {about(name)}")

# %% [markdown]
# Each builder's docstring holds its architecture in the notation. VGG-16's is the notes'
# pattern with N = 2 or 3 convolutions per block, M = 5 blocks and K = 2 hidden FC layers:

# %%
print("\n".join(line for line in zoo.vgg16.__doc__.splitlines() if line.startswith(" " * 8)))

# %% [markdown]
# Notice the spread in the table: GoogLeNet and ResNet-18 do more arithmetic than AlexNet with
# a fraction of its parameters, because they drop the large fully connected layers (global average
# pooling instead) and spend their budget on convolutions. Any of these names goes wherever a
# model is asked for: `zoo.get_model("resnet20")`, `cnnkit.fit(data, "resnet20")`,
# `cnnkit train --model resnet20`.
#
# ## VGG-16's memory, layer by layer
#
# The notes work through VGG-16 in a table: for every layer, the volume it outputs (memory)
# and the weights it holds. `summary.format_notes` prints the same table from the net itself.
# Building VGG-16's 138 million weights would take half a gigabyte, so we build it with
# `shapes_only` again: the table needs only the shapes.

# %%
with nn.shapes_only():
    vgg = zoo.get_model("vgg16")
vgg_summary = summary.summarize(vgg, (3, 224, 224))
print(summary.format_notes(vgg_summary))

# %% [markdown]
# Two things to notice, both the notes' point. Most of the **memory** is in the early
# convolutions, where the volume is still 224x224; most of the **parameters** are in the first
# fully connected layer, which connects the 7x7x512 volume to 4,096 outputs. The sums, from the
# rows:

# %%
rows = [row for row in vgg_summary.rows if not row.in_place]   # ReLU adds no volume
activations = vgg_summary.input_activations + sum(row.activations for row in rows)
first_two = sum(row.activations for row in rows[:2])
first_fc = next(row for row in rows if row.label.startswith("FC"))
print(f"activations per image: {activations:,} = {activations * 4 / 2**20:.0f} MiB in float32")
print(f"  of which the first two CONV3-64 layers: {first_two / activations:.0%}")
print(f"parameters: {vgg_summary.params:,}")
print(f"  of which the first FC layer: {first_fc.params / vgg_summary.params:.0%}")

NOTES_ACTIVATIONS, NOTES_PARAMS = 24e6, 138e6   # the totals the notes print under their table
print(f"against the notes' totals: activations x{activations / NOTES_ACTIVATIONS:.2f}, "
      f"parameters x{vgg_summary.params / NOTES_PARAMS:.3f}")

# %% [markdown]
# The parameter count is the notes' "138M parameters". The activations are not their total:
# the notes print `TOTAL memory: 24M * 4 bytes ~= 93MB / image`, but their own rows, which the
# table above reproduces line by line, add up to the figure computed here, about two thirds of
# it. The notes' total is a known slip (cnnkit's table prints the sum of the rows); the lesson
# stands either way: memory is spent early, parameters late, and at a batch of 64 images the
# activations alone outweigh the weights. Backward needs about as much again for the
# gradients, which is the training estimate's first line.
#
# ## FC -> conv: sliding a net over a larger image
#
# A fully connected layer that reads a C'xH'xW' volume is a convolution with H'xW' filters
# that happens to be applied at one position only. Rewrite it as that convolution (and the
# later fully connected layers as 1x1 convolutions) and the net accepts larger images: it then
# slides, and outputs a map of class scores, one per window, in one forward pass that shares
# the work of overlapping windows.
#
# We train a small digit classifier first. No layer pads (`/p0`), which, as we will see, makes
# the sliding exact.

# %%
x, y = data.load_mnist("train")
x_test, y_test = data.load_mnist("test")
digits = ("INPUT[1x28x28] -> CONV5-8/p0 -> RELU -> POOL2 -> CONV5-16/p0 -> RELU -> POOL2"
          " -> FC-64 -> RELU -> FC-10")
test = slice(0, 2000)
run = cnnkit.fit((x[:TRAIN_IMAGES], y[:TRAIN_IMAGES], x_test[test], y_test[test]), digits,
                 epochs=EPOCHS, seed=0, progress=False, log=None)
model = run.model.eval()
print(f"trained on {TRAIN_IMAGES:,} digits: test accuracy {run.test_accuracy:.3f}")

# %% [markdown]
# `convert.fully_convolutional` returns the converted net; the original is unchanged.

# %%
fcn = convert.fully_convolutional(model, (1, 28, 28))
print(fcn)

# %% [markdown]
# The Flatten is gone; `FC-64`, which read the 16x4x4 volume, is now a 4x4 convolution with 64
# filters, and `FC-10` a 1x1 convolution. On a 28x28 digit the converted net's output is a 1x1
# map of ten scores, which should be the original net's scores. We normalise the digits as the
# run did (its recorded mean and standard deviation) and compare:

# %%
prep = run.preprocessing


def normalise(images):
    """uint8 digits (N, H, W) -> the net's float32 input (N, 1, H, W), as training saw them."""
    return ((images.astype(np.float32) / 255 - prep.mean[0]) / prep.std[0])[:, None]


batch = normalise(x_test[:200])
scores, maps = model(batch), fcn(batch)
print(scores.shape, maps.shape)
print(f"largest difference: {np.abs(scores - maps[:, :, 0, 0]).max():.1e}")

# %% [markdown]
# The scores agree to float32 rounding. Now the point of the exercise: ten test digits laid
# out in a 2x5 grid make a 56x140 image, which the original net cannot take at all.

# %%
grid_rows, grid_cols = 2, 5
picked = np.arange(grid_rows * grid_cols) + 100
canvas = np.zeros((28 * grid_rows, 28 * grid_cols), np.uint8)
for k, i in enumerate(picked):
    r, c = divmod(k, grid_cols)
    canvas[28 * r:28 * (r + 1), 28 * c:28 * (c + 1)] = x_test[i]
print("the digits on the canvas:")
print(y_test[picked].reshape(grid_rows, grid_cols))

stride = convert.output_stride(model, (1, 28, 28))
image = normalise(canvas[None])
start = time.perf_counter()
score_map = fcn(image)
one_pass = time.perf_counter() - start
print(f"output stride {stride}, score map {score_map.shape[2:]} "
      f"(size rule: {convert.score_map_size(fcn, (1, *canvas.shape))})")

# %% [markdown]
# The two pools of stride 2 make an output stride of 4: map position (i, j) holds the ten
# scores of the 28x28 window whose corner is at pixel (4i, 4j). Below, each position shows the
# class the net picks there, or a dot where it is less than 90% sure:

# %%
probs = np.exp(score_map[0] - score_map[0].max(axis=0))
probs /= probs.sum(axis=0)
best, sure = probs.argmax(axis=0), probs.max(axis=0) > 0.9
for i in range(best.shape[0]):
    print("".join(str(d) if ok else "." for d, ok in zip(best[i], sure[i])))
print("windows that cover one digit exactly (every 7th position):")
print(best[::7, ::7])

# %% [markdown]
# Notice that the windows aligned with a digit (positions 0, 7, 14, ... since 28 / 4 = 7)
# name it, and that between digits the net is mostly unsure, or confidently wrong where half
# of one digit and half of the next look like something else: it was only ever trained on
# centred digits.
#
# Is this map really the original net applied to every window? `convert.sliding_scores` runs
# the original net on each of the windows in a loop, the slow way:

# %%
start = time.perf_counter()
reference = convert.sliding_scores(model, image, (1, 28, 28))
loop = time.perf_counter() - start
print(f"largest difference from the loop: {np.abs(reference - score_map).max():.1e}")
print(f"one pass {one_pass * 1e3:.1f} ms, {reference.shape[2] * reference.shape[3]} "
      f"separate windows {loop * 1e3:.1f} ms, exact: {convert.converted_is_exact(model)}")

# %% [markdown]
# The same scores, from one pass that is many times faster than the loop, because
# neighbouring windows share most of their convolution work. Exact holds here because no layer
# pads: a padded convolution sees zeros at a window's border where the larger image has
# pixels. The notes' own example is VGG-16 on a 384x384 image, whose convolutions all pad;
# `convert.explain` says what the conversion does and whether the map is exact:

# %%
vgg_fcn = convert.fully_convolutional(vgg, (3, 224, 224))
lines = convert.explain(vgg, vgg_fcn, (3, 224, 224), (3, 384, 384))
stride_line = next(i for i, line in enumerate(lines) if line.startswith("output stride"))
print("  ...")                                            # the convolutions, unchanged
print("\n".join(lines[stride_line - 7:]))                # the classifier, converted, and after

# %% [markdown]
# The notes' numbers: the first fully connected layer becomes a 7x7 convolution with 4,096
# filters, the output stride is 32, and a 384x384 image gives a 6x6 map of class scores in one
# pass. Because of the padding the map approximates the 36 separate crops rather than
# reproducing them. From the command line, `cnnkit convert vgg16 --image 3x384x384` prints
# the same, and `cnnkit summary vgg16 --notes` the memory table.
#
# Where next: [Taking a net elsewhere](06_elsewhere.py) exports a net to ONNX and brings
# PyTorch weights in; the [spec grammar](../reference/spec-grammar.md) lists every token.
