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
# # The course's path
#
# CS231n's second assignment walks a fixed path to a working convolutional net: build the
# three-layer convnet, check that its first loss is what chance predicts, check its gradients,
# make sure it can memorise a tiny training set, then train it for real and try batch
# normalisation and dropout, watching the loss of every iteration, and finally look at what the
# first layer learned. Each step catches a different kind of mistake before it costs an hour of
# training.
#
# This tutorial walks the same path with cnnkit, on the MNIST digits that ship inside the
# package (nothing is downloaded). At its default scale it trains on a few thousand digits and
# runs in about a minute on two cores.

# %%
import math
import os

import numpy as np

import cnnkit
from cnnkit import functional as F
from cnnkit import viz
from cnnkit.callbacks import Callback
from cnnkit.train import evaluate

# Full scale trains the two main runs (with and without batch norm) on all 60,000 training
# digits for 5 epochs and tests on all 10,000 (roughly 5 to 10 minutes on 2 cores); the
# default scale uses 5,000 digits for 3 epochs and tests on 2,000 (about a minute in all).
FULL_SCALE = os.environ.get("CNNKIT_FULL_SCALE") == "1"
TRAIN_IMAGES = 60_000 if FULL_SCALE else 5_000
VAL_IMAGES = 5_000 if FULL_SCALE else 1_000
TEST_IMAGES = 10_000 if FULL_SCALE else 2_000
EPOCHS = 5 if FULL_SCALE else 3

# What every run below shares: no progress bar and no per-layer statistics (this page shows
# its own output), no augmentation (the course trains without it), Adam at the course's rate.
COURSE = {"progress": False, "layer_stats": 0, "seed": 0,
          "augment": "none", "optimizer": "adam", "lr": 1e-3, "batch_size": 50}

# %% [markdown]
# ## The data
#
# `cnnkit.data.load_mnist` reads the copy inside the package (checking its sha256) and returns
# the images as stored: `uint8` pixels from 0 (background) to 255 (ink), one 28x28 array per
# digit, and the labels 0 to 9.

# %%
x_train, y_train = cnnkit.data.load_mnist("train")
x_test, y_test = cnnkit.data.load_mnist("test")
print("train", x_train.shape, x_train.dtype, " test", x_test.shape)
print("first labels", y_train[:10])

# %% [markdown]
# 60,000 training digits and 10,000 test digits, each (28, 28): no channel axis yet, since a
# grey image has one. Everything below takes the images in this stored form; cnnkit adds the
# channel axis, scales the pixels and normalises them itself, the same way for training,
# validation and prediction.
#
# ## The three-layer convnet
#
# The course's net is
#
# ```
# conv 7x7, 32 filters (padding 3) -> relu -> 2x2 max pool -> affine 100 -> relu -> affine 10
#                                                                        -> softmax loss
# ```
#
# It is in cnnkit's zoo as `three-layer-convnet`, designed for 32x32 images (the course trains
# it on CIFAR-10). Here it is built for one grey channel, and then written out in the notes'
# pattern notation, which builds the same layers:

# %%
model, input_shape = cnnkit.models.build_model("three-layer-convnet", (1, 32, 32),
                                               rng=np.random.default_rng(0))
print(model)
SPEC = "INPUT[1x32x32] -> CONV7-32 -> RELU -> POOL2 -> FC-100 -> RELU -> FC-10"
same, _ = cnnkit.models.build_model(SPEC, rng=np.random.default_rng(0))
print(f"parameters: zoo {model.num_parameters():,}, spec {same.num_parameters():,}")

# %% [markdown]
# Follow the shapes: the 7x7 conv with padding 3 keeps 32x32 (the size rule gives
# (32 - 7 + 6)/1 + 1 = 32), the pool halves it to 16x16, so the first affine layer sees
# 32 * 16 * 16 = 8,192 numbers per image. Almost all of the parameters are in that layer's
# 8,192 x 100 weights; the conv has only 32 * 7 * 7 + 32 of them.
#
# MNIST's digits are 28x28, smaller than the net's 32x32 input. cnnkit centres them in a
# field of zeros (as LeCun et al. did for LeNet-5), after scaling the pixels to [0, 1] and
# normalising them by the training images' mean and standard deviation. `cnnkit.fit` measures
# and records all of that by itself; for the checks below we make the same
# `cnnkit.data.Preprocessing` by hand:

# %%
mean, std = cnnkit.data.pixel_stats(x_train[:, None])        # per channel, in pixel / 255 units
prep = cnnkit.data.Preprocessing((1, 28, 28), input_shape, mean, std, fit="centre")
batch = prep(x_train[:100])
print("net input", batch.shape, batch.dtype, f" mean {batch.mean():+.2f}  std {batch.std():.2f}")

# %% [markdown]
# A batch of 100 digits became a float32 array `(100, 1, 32, 32)` of roughly zero mean and
# unit spread (not exactly: the zero border added to reach 32x32 is not counted in the
# statistics, which are those of the 28x28 digits).
#
# ## Sanity check 1: the first loss
#
# Before any training, the weights are small and random, so the net's ten scores are all near
# zero and softmax gives each class a probability near 1/10. The softmax loss of a correct
# class with probability 1/10 is `-log(1/10) = log(10)`. A first loss far from that means the
# initialisation or the loss is wrong.

# %%
loss, _ = F.softmax_loss(model.forward(batch), y_train[:100])
print(f"initial loss {loss:.3f}   log(10) = {math.log(10):.3f}")
weights = [p.data for _, p in model.named_parameters() if p.data.ndim >= 2]
print(f"with L2 regularisation 0.01: {loss + F.l2_regularization(weights, 0.01)[0]:.3f}")

# %% [markdown]
# The loss is close to log(10), as it should be, and adding a regularisation term makes it go
# up, the second check the course makes: the penalty is counted.
#
# ## Sanity check 2: the gradients
#
# [Layers from first principles](01_layers.py) checked each layer's backward on its own;
# `cnnkit.gradcheck.check_model` checks the assembled net, comparing each parameter's
# backpropagated gradient with centred differences of the loss. It must run in float64 (a
# copy, so the net we train stays float32), and on a tiny input: each checked weight costs
# two forward passes. With 800,000 weights we check 10 random entries of each parameter, the
# course's sparse check, on two digits.

# %%
checked = model.copy().astype(np.float64)
errors = cnnkit.gradcheck.check_model(checked, prep(x_train[:2]), y_train[:2], num_checks=10,
                                      rng=np.random.default_rng(0))
for name, err in errors.items():
    print(f"{name:9} relative error {err:.1e}")

# %% [markdown]
# Every relative error is around 1e-9 or smaller: backpropagation through the whole net
# agrees with the numerical derivative (an error near 1e-2 or above would mean a bug;
# [the first tutorial](01_layers.py) shows what one looks like). The names are the layers'
# positions in the net: `0` is the conv, `4` and `6` the two affine layers.
#
# ## Sanity check 3: overfit 50 examples
#
# A net that cannot memorise 50 images cannot learn anything: with hundreds of thousands of
# weights it should reach 100% on them within a few epochs. It will not do well on other
# digits, and that is expected. This is the course's last check before real training.
#
# To watch training and validation accuracy measured the same way after every epoch (with the
# net in evaluation mode, as the course's `check_accuracy` does), we write a small callback.
# The Trainer calls a callback's `on_epoch_end` at the end of each epoch; `self.model` is the
# net and `self.trainer.preprocess` the preprocessing the run uses.

# %%
class EpochScores(Callback):
    """Loss and accuracy on fixed image sets at the end of every epoch, in evaluation mode."""

    def __init__(self, **sets):
        self.sets = sets                                  # name -> (images, labels)
        self.loss = {name: [] for name in sets}
        self.accuracy = {name: [] for name in sets}

    def on_epoch_end(self, epoch, logs):
        for name, (images, labels) in self.sets.items():
            loss, accuracy = evaluate(self.model, images, labels,
                                      preprocess=self.trainer.preprocess)
            self.loss[name].append(loss)
            self.accuracy[name].append(accuracy)


def accuracy_table(**columns):
    """Print one row per epoch, one column per list of accuracies."""
    print("epoch  " + "  ".join(f"{name:>10}" for name in columns))
    for epoch, row in enumerate(zip(*columns.values()), start=1):
        print(f"{epoch:5}  " + "  ".join(f"{value:10.3f}" for value in row))


x_val, y_val = x_train[-500:], y_train[-500:]        # 500 digits none of the small runs train on
tiny = EpochScores(train=(x_train[:50], y_train[:50]), val=(x_val, y_val))
cnnkit.fit((x_train[:50], y_train[:50], x_val, y_val), SPEC, epochs=10, val_size=0,
           callbacks=[tiny], log=None, **{**COURSE, "batch_size": 10, "schedule": "none"})
accuracy_table(**tiny.accuracy)

# %% [markdown]
# The training accuracy climbs to 1.0 (all 50 right) within a few epochs, while the accuracy on
# 500 other digits stays far lower: the net memorised the 50 rather than learning digits in
# general. That is overfitting, and here it is what we wanted to see. (`val_size=0` tells `fit`
# not to hold any of the 50 out for validation, the callback does the validation instead;
# mini-batches of 10 at a constant learning rate give it 5 steps per epoch.)
#
# ## Training on a subset
#
# Now the real thing, on the first few thousand digits. `cnnkit.fit` holds out `val_size` of
# them for validation, trains, keeps the weights of the best validation epoch and tests them on
# the test digits it is given. `log=print` prints what it trains and a line per epoch.
#
# We train the zoo net built above (`fit` trains a net it is given in place), keeping a copy of
# its first layer's random filters to compare with later. A net given as an object does not
# say what input size it was designed for, so `input="1x32x32"` tells `fit`, which then centres
# the digits as the `prep` above did.

# %%
initial_filters = model[0].weight.data.copy()
subset = (x_train[:TRAIN_IMAGES], y_train[:TRAIN_IMAGES],
          x_test[:TEST_IMAGES], y_test[:TEST_IMAGES])
run = cnnkit.fit(subset, model, input="1x32x32", epochs=EPOCHS, val_size=VAL_IMAGES, log=print,
                 **COURSE)

# %% [markdown]
# The first line says what it trained on, including that the 28x28 digits were centred in the
# net's 32x32 input; then each epoch's training and validation loss and accuracy. The learning
# rate follows `fit`'s default cosine schedule down across the epochs. A few thousand digits
# and a few epochs already get the large majority of test digits, which the net never saw,
# right.
#
# ## Loss per iteration
#
# The course plots the loss of every mini-batch, not just one number per epoch: the per-batch
# curve shows whether the learning rate is sane (a steady fall with noise around it) long
# before an epoch ends. The run's history keeps both: per epoch `train_loss`, `val_acc` and
# the rest; per iteration `batch_loss`, with `iterations` marking where each epoch ended.

# %%
history = run.history
print(f"{len(history['batch_loss'])} iterations; epochs ended at {history['iterations']}")
print("first 5 batch losses", np.round(history["batch_loss"][:5], 3))
viz.plot_history(history, title="three-layer convnet, no batch norm")

# %% [markdown]
# On the left, each mini-batch's loss (faint) with its running mean, and the per-epoch train
# and validation losses at the iteration where each epoch ended; on the right, the accuracies
# per epoch. The fast fall over the first hundred or so iterations, then a slow one, is the
# shape a good learning rate gives. A loss that stays flat means too low a rate; one that
# explodes, too high.
#
# Anything else per iteration is one callback away: the Trainer calls `on_batch_end(batch,
# logs)` after every mini-batch with its `loss`, `acc` and `iteration`, as `EpochScores`
# above used `on_epoch_end`.
#
# ## Batch normalisation against none
#
# Batch norm after the conv and after the hidden affine layer normalises their outputs over
# each mini-batch, so later layers see inputs of a steady scale whatever the earlier weights
# do. The course's claim: the same net trains faster and is less sensitive to its
# initialisation. Same data, same settings; only the two `BN` layers differ.
#
# `cnnkit.compare.compare` puts runs side by side: one row per run with its best validation
# accuracy (and the epoch it was reached at), its test accuracy and its time, then the
# settings that differ between the runs, and those they share, once. It takes runs trained in
# memory, as here, or run folders (`cnnkit compare runs/a runs/b` on the command line: see
# [Comparing runs](../guide/comparing-runs.md)).

# %%
from cnnkit.compare import compare

SPEC_BN = "INPUT[1x32x32] -> CONV7-32 -> BN -> RELU -> POOL2 -> FC-100 -> BN -> RELU -> FC-10"
run_bn = cnnkit.fit(subset, SPEC_BN, epochs=EPOCHS, val_size=VAL_IMAGES, log=None, **COURSE)
bn_against_none = compare(run, run_bn, names=["no BN", "BN"])
print(bn_against_none)

# %% [markdown]
# Only the net differs: the first run's was given as an object, which its settings record as
# `module:Sequential`, with its input size given as `input`; the second's spec says both.
# Everything else is the same in both. The batch-norm net reaches the higher validation and
# test accuracy: what it learns carries over better to digits it has not seen.
# Its curves overlaid on the plain net's, one colour per run (the loss of every mini-batch as
# a running mean, the validation loss dashed; the accuracies per epoch on the right), drawn
# by `viz.plot_runs`:

# %%
bn_against_none.plot()

# %% [markdown]
# The batch-norm net starts slower: its training loss over the first epoch is higher, while
# the plain net's drops steeply in its first few dozen iterations. Yet its validation accuracy
# (right, solid) is higher after every epoch, and by the end of the run the two training
# losses are at a similar level while the validation accuracies differ. So "trains faster"
# shows here in the validation accuracy reached per epoch, not in the training loss. (The
# training loss is each epoch's average over its mini-batches, measured while the weights
# were still changing.) Batch norm's backward, which every step here runs, is derived in
# [batch norm's backward](../explanation/batchnorm-backward.md).
#
# ## Batch norm at a tiny batch: layer norm and group norm
#
# Batch norm normalises each feature by the statistics of the batch an image arrives in, so an
# image's output in training depends on the other images of its batch, and evaluation, which
# has no batch, swaps in the running averages. With a few images per batch those statistics
# rest on few values. **Layer norm** (`LN`) normalises each image by its own statistics, over
# all of its values at that layer; **group norm** (`GN4`) does it over groups of channels,
# here four groups. Neither looks at the rest of the batch, so each computes the same in
# training and in evaluation, whatever the batch size. [Layer and group
# norm](../explanation/layer-and-group-norm.md) derives them; their spec tokens are in the
# [spec grammar](../reference/spec-grammar.md).
#
# The same small net with each of the three after both convs and after the hidden affine
# layer, trained on the same 2,500 digits (500 more held out for validation) for 3 epochs at a
# batch of 2 and of 64: the same images, so batch 2 takes 32 times as many steps. SGD with
# momentum, its learning rate scaled with the batch (0.05 at batch 64, 0.0016 at batch 2; a
# step's gradient is the batch's average, and scaling the rate linearly keeps the step per
# image the same). The table shows the training accuracy of the last epoch (measured in
# training mode, as the net trained), and the best validation accuracy and the test accuracy
# of its weights, both in evaluation mode.

# %%
NORM_SPEC = ("INPUT[1x28x28] -> CONV3-8 -> {norm} -> RELU -> POOL2 -> CONV3-16 -> {norm} -> RELU"
             " -> POOL2 -> FC-64 -> {norm} -> RELU -> FC-10")
few = (x_train[:3_000], y_train[:3_000], x_test[:TEST_IMAGES], y_test[:TEST_IMAGES])
norm_runs = {}
for batch in (2, 64):
    for norm in ("BN", "GN4", "LN"):
        norm_runs[norm, batch] = cnnkit.fit(
            few, NORM_SPEC.format(norm=norm), epochs=3, val_size=500, log=None,
            **{**COURSE, "optimizer": "momentum", "lr": 0.05 * batch / 64, "batch_size": batch})

print(f"{'':6}{'batch 2':>24}{'batch 64':>30}")
print(f"{'norm':6}" + f"{'train':>10}{'val':>10}{'test':>10}" * 2)
for norm in ("BN", "GN4", "LN"):
    print(f"{norm:6}" + "".join(f"{r.history['train_acc'][-1]:10.3f}{r.best['val_acc']:10.3f}"
                                f"{r.test['accuracy']:10.3f}"
                                for r in (norm_runs[norm, 2], norm_runs[norm, 64])))

# %% [markdown]
# At batch 64 the three nets end a few points apart, batch norm ahead; with one seed and a
# short run, a difference of that size says little. At batch 2 group norm and layer norm do
# as well as at 64 or better, while batch norm falls far behind: its training accuracy stays
# near a half and its test accuracy well below the others'. Its accuracy in evaluation mode
# is *higher* than in training mode: the net evaluated, with the running averages, is not the
# net that trained, with each pair's own statistics.
#
# The count of values behind each statistic says why. After the hidden affine layer batch norm
# normalises each feature over the batch, 2 values at batch 2, and two values always normalise
# to -1 and +1 (as [batch norm's
# backward](../explanation/batchnorm-backward.md#returned-never-written-into-an-argument)
# shows), so in training each of the 64 features only says which of the two digits had the
# larger value. After a conv a statistic rests on 2 x H x W values, far more, and a net with
# batch norm only after its convs (not shown) trains at batch 2 as well as at 64. The Group
# Norm paper's claim, batch norm's error rising steeply as the batch shrinks while group
# norm's stays flat, shows here only where a statistic has few values: at batch 4 this net's
# batch norm already comes within a couple of points of the others. Layer norm and group norm
# normalise each digit over its own values (after the affine layer LN over its 64 features,
# GN4 over groups of 16; after the first conv over 8 x 28 x 28 and 2 x 28 x 28 values), so the
# batch can be any size, 1 included, and there are no running averages to keep.
#
# ## Dropout
#
# Dropout zeroes a random half of a layer's outputs at every training step (and scales the
# rest up, so nothing changes on average), which stops units from relying on each other. Its
# use is against overfitting, so we make the net overfit: train it on only 200 digits for 15
# epochs, with and without dropout before each affine layer, and watch the gap between
# training and validation (both measured in evaluation mode, where dropout is off).

# %%
SPEC_DROPOUT = ("INPUT[1x32x32] -> CONV7-32 -> RELU -> POOL2 -> DROPOUT0.5 -> FC-100 -> RELU"
                " -> DROPOUT0.5 -> FC-10")
small = (x_train[:200], y_train[:200])
scores, dropout_runs = {}, {}
for name, spec in (("no dropout", SPEC), ("dropout", SPEC_DROPOUT)):
    scores[name] = EpochScores(train=small, val=(x_val, y_val))
    dropout_runs[name] = cnnkit.fit((*small, x_val, y_val), spec, epochs=15, val_size=0,
                                    callbacks=[scores[name]], log=None,
                                    **{**COURSE, "batch_size": 20, "schedule": "none"})

print(f"{'':6}{'no dropout':>26}{'dropout':>26}")
print(f"{'epoch':6}" + f"{'train loss':>13}{'val loss':>13}" * 2)
for epoch in range(0, 15, 2):
    print(f"{epoch + 1:<6}" + "".join(f"{s.loss[part][epoch]:13.3f}" for s in scores.values()
                                     for part in ("train", "val")))
for name, s in scores.items():
    print(f"{name:>10}: accuracy at the end, train {s.accuracy['train'][-1]:.3f}")
print(compare(dropout_runs))

# %% [markdown]
# Without dropout the training loss falls almost to zero: the net becomes certain of every
# one of its 200 digits. The validation loss stops falling after a few epochs and then creeps
# back up, as the net grows more confident in its mistakes on digits it has not seen: the gap
# between the two losses keeps widening. With dropout the training loss stays well above zero
# and the validation loss ends lower, so the gap is narrower. The accuracies at the end differ
# much less (the comparison's `test acc` is the accuracy on the 500 validation digits, which
# were given to `fit` as its test split): on so few digits dropout shows first in the losses,
# in how sure the net is, more than in how many digits it gets right. Dropout trades some fit
# to the training set for less memorisation, which is its whole point. (The comparison's
# curves would show each run's training loss in train mode, with dropout on, so the table of
# losses measured in evaluation mode above is the fair one here.)
#
# ## The first layer's filters
#
# The first conv layer's 32 filters are 7x7 arrays of weights, each applied directly to the
# pixels, so they can be drawn as pictures. `viz.plot_filters` draws the first conv of a net;
# with one input channel, in grey on one shared scale, mid-grey for zero.

# %%
viz.plot_filters(run.model)

# %% [markdown]
# Speckled noise, hardly the oriented edges the course shows for CIFAR-10. The reason is in
# the numbers: the filters started as random draws (He initialisation), and the small Adam
# steps of a short run moved each weight by much less than its starting size (the two means
# printed below). The learned part is there, hidden under the initial noise. `plot_filters`
# also takes a plain `(F, C, KH, KW)` array, so we can draw what training *added*: the trained
# filters minus the initial ones.

# %%
change = run.model[0].weight.data - initial_filters
print(f"mean |initial weight| {np.abs(initial_filters).mean():.3f}, "
      f"mean |change| {np.abs(change).mean():.3f}")
viz.plot_filters(change, title="what training added to each filter")

# %% [markdown]
# The change is smooth: light and dark bands side by side, edge and stroke detectors at
# various orientations, which is what the net learned from the digits. After so few steps it
# is small next to the random start, so the filters themselves still look like noise.
#
# ## Activation maps
#
# What does the layer make of one digit? `viz.plot_activations` runs an image through the net
# and shows, for each conv layer, the output of its first 16 filters: where in the image each
# filter responds (red positive, blue negative, white zero). Given the run, it takes the image
# as stored, a (28, 28) `uint8` digit here, and prepares it the way the run's training digits
# were (`run.preprocessing`).

# %%
viz.plot_activations(run, x_test[0])

# %% [markdown]
# Each map is the digit seen through one filter. Many respond to the edges of strokes, red on
# one side and blue on the other, each filter to edges of its own orientation: the 7's
# horizontal bar stands out in some maps, its diagonal in others. These maps, pooled, are what
# the affine layers classify. More ways of looking inside a trained net
# (saliency, per-layer statistics over training) are in [inside the net](04_inside_the_net.py).
