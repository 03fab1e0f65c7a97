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
# # Inside the net
#
# A training run prints a loss and an accuracy per epoch. When those numbers are bad, they do
# not say why: a learning rate too high, weights initialised too small, a layer whose units have
# all died. This tutorial looks inside a net while and after it trains:
#
# 1. **callbacks**: your own code at every batch and epoch, and the built-in ones (early
#    stopping, checkpoints);
# 2. **`LayerStats`**: each layer's activations, gradients and updates over training, for a
#    healthy net and for a badly initialised one;
# 3. **saliency**: which pixels a trained net's answer depends on;
# 4. two of the **notes' experiments**, run small: vanishing gradients, and batch norm against
#    the weight scale.
#
# The data are the MNIST digits that ship inside cnnkit, a few thousand of them so that every
# net here trains in seconds.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
from IPython import display
from PIL import Image

import cnnkit
from cnnkit import viz
from cnnkit.callbacks import Callback, EarlyStopping, ModelCheckpoint
from cnnkit.experiments import bn_init, run_experiment, vanishing
from cnnkit.models import spec
from cnnkit.monitor import LayerStats

# Full scale trains on 20,000 digits instead of 3,000 and runs the experiments at their default
# sizes: about 1.5 minutes on 2 cores for the whole page, against about 30 s by default.
FULL_SCALE = os.environ.get("CNNKIT_FULL_SCALE") == "1"
LIMIT = 20_000 if FULL_SCALE else 3_000

workspace = tempfile.TemporaryDirectory()
work = Path(workspace.name)

# %% [markdown]
# ## Callbacks: your code inside the training loop
#
# `cnnkit.fit` (and the `Trainer` underneath it) runs a loop over epochs and mini-batches. A
# callback is an object whose methods the loop calls at fixed points, with the names Keras uses:
# `on_train_begin`, `on_epoch_begin`, `on_batch_begin`, `on_batch_end`, `on_epoch_end`,
# `on_train_end`. Inside them `self.model` is the net and `self.trainer` the loop; setting
# `self.trainer.stop_training = True` ends training after the current epoch. The progress
# bar, the per-epoch log line and the checkpoint are callbacks themselves.
#
# Here is one of our own. It answers a question the loss does not: how far have the first
# layer's filters moved from where they started? It keeps a copy of the first weight at the
# start and, at each epoch's end, records the distance to it relative to its size,
# `||W - W0|| / ||W0||`.


# %%
class FilterDrift(Callback):
    """Record, per epoch, how far the first weight has moved from its initial value."""

    def on_train_begin(self, logs):
        self.name, self.weight = next((name, p) for name, p in self.model.named_parameters()
                                      if name.endswith("weight"))
        self.initial = self.weight.data.copy()
        self.drift = []

    def on_epoch_end(self, epoch, logs):
        change = np.linalg.norm(self.weight.data - self.initial) / np.linalg.norm(self.initial)
        self.drift.append(float(change))


# %% [markdown]
# We train a small convnet (two stages of 3x3 convolution, ReLU and 2x2 max pooling, then a
# hidden layer of 64 units) with four callbacks: ours; `EarlyStopping`, which stops when the
# validation loss has not improved for `patience` epochs; `ModelCheckpoint`, which saves the
# whole training state at every epoch's end; and `LayerStats`, which records the layer
# statistics of the next section every 10 iterations (`layer_stats=0` turns off the run's own
# recorder, which would choose its cadence from the run's length). The epoch limit is generous,
# so early stopping has something to stop. Two more callbacks write logs other tools read:
# `cnnkit.callbacks.CSVLogger("epochs.csv")`, a row per epoch, and
# `cnnkit.tensorboard.TensorBoard("tb")`, event files for `tensorboard --logdir tb`
# (`--tensorboard DIR` on the command line; see the guide's "Logs other tools read").

# %%
drift = FilterDrift()
early = EarlyStopping("val_loss", patience=2)
checkpoint = ModelCheckpoint(work / "last.npz")
stats = LayerStats(every=10)
NET = "[CONV3-16 -> RELU -> POOL2]*2 -> FC-64 -> RELU -> FC-10"
run = cnnkit.fit("mnist", NET, limit=LIMIT, epochs=30, layer_stats=0, progress=False,
                 log=print, callbacks=[drift, early, checkpoint, stats])

# %% [markdown]
# `limit` took the first few thousand training and test digits; a tenth of the training part
# was held out to validate on after each epoch. Training stopped well before the 30 epochs.
# (A callback's hooks get the epoch counted from 0, as Keras's do; `EarlyStopping` reports its
# epochs counted from 1, as the log and the history count them.)

# %%
print(f"early stopping: best val_loss {early.best:.4f} at epoch {early.best_epoch}, "
      f"stopped after epoch {early.stopped_epoch}")
print(f"the run kept the weights of its best validation accuracy, epoch {run.best['epoch']}")
print(f"first weight {drift.name!r}, relative drift per epoch:",
      " ".join(f"{d:.2f}" for d in drift.drift))

# %% [markdown]
# Early stopping watched the validation loss, the run's own choice of weights the validation
# accuracy; the two need not pick the same epoch.
#
# The filters move most in the first epoch, then less with each epoch, as the loss falls and
# the gradients with it. A drift that kept growing fast late in training would hint at a
# learning rate too high; one near zero, at a layer that does not learn.
#
# The checkpoint holds everything needed to continue or to use the net: `cnnkit.load_run`
# reads it back as a `Run` (and `fit(..., resume=path)` would continue training from it).

# %%
saved = cnnkit.load_run(work / "last.npz")
x_test, y_test = cnnkit.data.load_mnist("test")              # uint8 (10000, 28, 28)
print(saved)
print("saved net on 5 test digits:", " ".join(saved.predict(x_test[:5]).labels))
print("their true classes:        ", " ".join(str(y) for y in y_test[:5]))

# %% [markdown]
# The checkpoint holds the state after the last epoch, not the best one; `repr` says what it
# holds ("not tested": the test score is recorded in a run folder, not in this checkpoint).
#
# ## `LayerStats`: is each layer healthy?
#
# The course gives rules of thumb for a net that trains well: each layer's activations keep a
# similar spread from the first layer to the last (neither shrinking to zero nor blowing up),
# gradients reach the first layers at a size comparable to the last, and each step changes
# the weights by about a thousandth of their size (`||delta W|| / ||W||` near 1e-3).
# `cnnkit.monitor.LayerStats` records exactly these, every `every` iterations, and
# `viz.plot_layer_stats` draws them. Here are those the run above recorded:

# %%
viz.plot_layer_stats(stats)

# %% [markdown]
# How to read the four panels:
#
# - **Activations by layer** (top left): the median and the 15th to 85th percentile of each
#   layer's output, at the first recorded iteration (grey) and the last (red). The spreads stay
#   within about an order of magnitude of each other from the first layer to the last (the
#   fully connected layers' grow most, as the net grows confident): nothing shrinks to zero or
#   blows up.
# - **Activation spread over training** (top right): each layer's standard deviation; the
#   lines settle after the first iterations and no layer collapses.
# - **Weight gradient norms** (bottom left, log scale): the layers' lines sit within an order of
#   magnitude or so of each other: the gradient reaches the first layer.
# - **Update / weight ratio** (bottom right, log scale): each step's change of a weight over
#   the weight's size, above the dashed 1e-3 line at first, approaching it as training
#   settles.
#
# ### A badly initialised net beside a well initialised one
#
# To see what unhealthy looks like, take a plain net without batch norm, four 3x3
# convolutions with ReLUs, and initialise it twice: once as the spec builds it (He
# initialisation, scaled for ReLU layers: weight variance 2 / fan-in), once with every weight
# drawn as `0.01 * randn`, the course's `weight_scale` default, which is fine for a two-layer
# net but far too small for this one. This time the run's own recorder keeps the statistics
# (`layer_stats=5`: every 5 iterations, in `run.layer_stats`).

# %%
PLAIN_NET = "[CONV3-8 -> RELU]*2 -> POOL2 -> [CONV3-8 -> RELU]*2 -> POOL2 -> FC-10"


def plain_net(weight_scale=None):
    """The plain net, He-initialised, or with every weight drawn as weight_scale * randn."""
    rng = np.random.default_rng(0)
    model = spec.build(PLAIN_NET, (1, 28, 28), rng=rng)
    if weight_scale is not None:
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                p.data[...] = cnnkit.init.gaussian(p.shape, rng, weight_scale=weight_scale)
    return model


runs = {}
for label, scale in (("He init", None), ("0.01 * randn", 0.01)):
    runs[label] = cnnkit.fit("mnist", plain_net(scale), limit=LIMIT // 2, epochs=2,
                             layer_stats=5, progress=False, log=None)
    history = runs[label].history
    print(f"{label:>13}: training loss per epoch {history['train_loss'][0]:.3f} -> "
          f"{history['train_loss'][-1]:.3f}, test accuracy {runs[label].test_accuracy:.3f}")

# %% [markdown]
# The same net, the same data, the same optimizer: one learns, the other's loss stays near
# 2.30, which is `ln 10`, the loss of a net that gives each of the ten classes the same
# probability, and its accuracy stays far below the other's. The statistics show why. First
# the healthy net:

# %%
viz.plot_layer_stats(runs["He init"].layer_stats, title="He initialisation: healthy")

# %% [markdown]
# Then the badly initialised one:

# %%
viz.plot_layer_stats(runs["0.01 * randn"].layer_stats,
                     title="0.01 * randn initialisation: activations and gradients vanish")

# %% [markdown]
# Compare the panels (mind the scales: the two figures' axes differ):
#
# - **Activations**: with `0.01 * randn` each convolution multiplies the spread by roughly
#   `0.01 * sqrt(fan-in)` (3 x 3 x 8 = 72 inputs after the first layer: about 0.08), so at
#   iteration 1 (grey) the outputs shrink layer by layer to almost nothing. With He
#   initialisation every layer's spread is of order 1, at the start and at the end.
# - **Gradients**: the backward pass multiplies by the same small weights, and each weight's
#   gradient is its input times the gradient from above, both tiny: at iteration 1 every
#   weight's gradient is some four orders of magnitude below the healthy net's.
# - **Updates**: Adam divides each step by the gradient's running size, so it still moves the
#   weights by about the learning rate per step; against weights this small, that is a ratio
#   far above the 1e-3 line. Adam slowly grows the weights out of the hole (the rising lines),
#   but two epochs are not enough. With plain SGD the steps would be as tiny as the gradients
#   and the net would not move at all.
#
# Batch norm, or an initialisation scaled to the layer's fan-in, fixes this; the second
# experiment at the end of this page sweeps the weight scale with and without batch norm.
#
# ## Saliency: which pixels does the answer depend on?
#
# The gradient of a class score with respect to the input pixels says how much each pixel
# moves that score (Simonyan et al., "Deep inside convolutional networks"). `viz.saliency`
# computes it with the net's own backward pass, taking the largest absolute value over the
# colour channels:
#
# ```
# M[i, j] = max over c of | d score_class / d x[c, i, j] |
# ```
#
# `viz.plot_saliency` draws a digit beside its map. Given the run, it takes the digit as stored
# (a (28, 28) uint8 array) and prepares it with the run's preprocessing, exactly as the
# training digits were (scaled to [0, 1], then normalised by the training set's mean and
# standard deviation):

# %%
viz.plot_saliency(run, x_test[0])

# %% [markdown]
# The map is speckled: raw gradients are noisy, and even background pixels move the score a
# little (a pixel lit there could start a stroke). But the brightest pixels sit on or beside
# the digit's strokes, at its ends and corners.
#
# For several digits at once, `viz.saliency` returns the map itself, an array. Averaging the
# maps of a few noisy copies of each input (SmoothGrad, Smilkov et al. 2017) removes much of
# the speckle. Top row: the digits; middle: their saliency maps; bottom: the average over 16
# noisy copies (each map scaled to its own maximum).

# %%
digits = x_test[:8]
net_input = run.preprocessing(digits[:, None])          # the net's input, as in training
noise = np.random.default_rng(0)


def smooth_saliency(x, copies=16, sigma=0.3):
    """The mean saliency map of ``copies`` copies of ``x`` with Gaussian noise added."""
    return np.mean([viz.saliency(run.model, x + sigma * noise.standard_normal(x.shape))
                    for _ in range(copies)], axis=0)


plain = np.stack([viz.saliency(run.model, net_input[i:i + 1]) for i in range(len(digits))])
smooth = np.stack([smooth_saliency(net_input[i:i + 1]) for i in range(len(digits))])
rows = [digits] + [np.round(255 * m / m.max(axis=(1, 2), keepdims=True)).astype(np.uint8)
                   for m in (plain, smooth)]
sheet = Image.fromarray(np.vstack([np.hstack([np.pad(image, 1, constant_values=128)
                                              for image in row]) for row in rows]))
sheet.resize((sheet.width * 3, sheet.height * 3), Image.NEAREST)

# %% [markdown]
# The smoothed maps are calmer, and in several of them (the ones, the fours, the nine) the
# digit's shape shows through: the answer rests mostly on the strokes and their edges.
# Saliency maps are a rough instrument; they show where the net is sensitive, not why.

# %% [markdown]
# ## Two of the notes' experiments
#
# `cnnkit.experiments` holds the notes' experiments as runnable code: `cnnkit experiment NAME`
# on the command line, `run_experiment(NAME, config=...)` from Python. Each writes its figures
# and a `results.json` into a folder and prints a table, with each of the notes' claims marked
# met or not met. Each module's `Config` sets the scale; here they run smaller than their
# defaults.
#
# ### Vanishing gradients
#
# Nine hidden layers of 100 units, trained with SGD: sigmoid units with Xavier initialisation
# against ReLU units with He initialisation. The table compares the gradient reaching the
# first layer with the gradient at the output layer.

# %%
vanishing_config = vanishing.Config() if FULL_SCALE else \
    vanishing.Config(steps=600, train_size=10_000, test_size=2_000, snapshots=3)
result = run_experiment("vanishing-gradients", config=vanishing_config, out=work,
                        progress=False)
vanishing_folder = Path(result["folder"])

# %% [markdown]
# The sigmoid's derivative is at most 0.25, so each layer of the backward pass shrinks the
# gradient by that factor or more; nine layers down, the first layer's gradient is some five
# orders of magnitude below the output layer's, and the sigmoid net does not learn. ReLU passes
# the gradient through unchanged wherever a unit is active, and He initialisation keeps the
# spread per layer constant. The figure shows it layer by layer, at initialisation:

# %%
display.Image(filename=vanishing_folder / "gradients_at_init.png")

# %% [markdown]
# ### Batch norm against the weight scale
#
# The course's sweep: a net of 7 hidden layers of 50 ReLU units, with and without batch norm,
# every weight drawn as `scale * randn` for a range of scales, each trained briefly with Adam.

# %%
bn_config = bn_init.Config() if FULL_SCALE else \
    bn_init.Config(scales=8, epochs=6, train_size=1_000, val_size=1_000)
result = run_experiment("bn-init", config=bn_config, out=work, progress=False)
display.Image(filename=Path(result["folder"]) / "accuracy_vs_weight_scale.png")

# %% [markdown]
# Without batch norm only a narrow band of scales trains at all: below it the activations
# vanish layer by layer (the plain net above, in a deeper form), above it they explode. With
# batch norm each layer's input is renormalised whatever the scale, and most scales train.
# Batch norm does not make the scale irrelevant, though: its best accuracy still depends on it.
#
# ## What to take away
#
# - A callback is a few lines of your own code at fixed points of the loop; cnnkit's progress
#   bar, log, checkpoint and early stopping are built the same way.
# - `LayerStats` separates "the loss is stuck" into its causes: activations that vanish or
#   explode along the depth, gradients that do not reach the first layers, steps too large or
#   too small for the weights.
# - A saliency map shows which pixels an answer rests on.
# - The experiments reproduce the notes' claims; run them at full scale with
#   `cnnkit experiment NAME --full`.
#
# The guide's [Seeing inside the net](../guide/seeing-inside.md) lists every callback, every
# `viz` function and the run report.

# %% [markdown]
# Finally, the temporary folder goes, with everything this page wrote into it.

# %%
workspace.cleanup()
