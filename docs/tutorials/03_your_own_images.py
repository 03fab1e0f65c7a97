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
# # Your own images
#
# Sooner or later the images you want to classify are files on a disk, not an array shipped
# with a course. cnnkit reads them with the `folder:DIR` data source: one subfolder per class,
# the class names taken from the folder names. This tutorial builds two such folders from
# images that ship inside installed packages (nothing is downloaded), trains a small net on
# each, and sets a trivial baseline beside it, so you can see what the net adds:
#
# 1. scikit-learn's scanned handwritten digits, written as PNG files, one folder per digit;
# 2. colour photographs from scikit-image, cut into small patches, one class per photograph.
#
# For each we train with `cnnkit.fit`, evaluate, predict on a few files and write the run's
# HTML report.

# %% [markdown]
# ## Setting up
#
# Everything this page writes goes into a temporary folder, removed at the end; that includes
# cnnkit's cache of decoded images, which `CNNKIT_CACHE` points there (by default it is under
# `~/.cache/cnnkit`).

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image
from sklearn.datasets import load_digits

import cnnkit
from cnnkit import viz

# Full scale trains each net longer, on four times as many photo patches: about 2.5 minutes
# on 2 cores for the whole page, against about 40 s at the default scale.
FULL_SCALE = os.environ.get("CNNKIT_FULL_SCALE") == "1"
DIGIT_EPOCHS = 40 if FULL_SCALE else 15
PHOTO_EPOCHS = 20 if FULL_SCALE else 8
PATCHES_PER_TILE = 24 if FULL_SCALE else 6

workspace = tempfile.TemporaryDirectory()
work = Path(workspace.name)
os.environ["CNNKIT_CACHE"] = str(work / "cache")
rng = np.random.default_rng(0)

# %% [markdown]
# Two small helpers for looking at what we write: a grid of images as one picture (a Pillow
# image, which the notebook shows as it is), and a listing of a folder tree that names the first
# few files of each folder.


# %%
def image_grid(images, columns=12, zoom=4):
    """Tile equal-sized uint8 images, (N, H, W) or (N, H, W, 3), into one enlarged picture."""
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    rows = -(-n // columns)
    sheet = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1) + images.shape[3:], 255,
                    np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        sheet[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = image
    picture = Image.fromarray(sheet)
    return picture.resize((picture.width * zoom, picture.height * zoom), Image.NEAREST)


def show_tree(root, folders=3, files=2):
    """Print the folder tree under ``root``: the first ``folders`` subfolders of each folder and
    the first ``files`` files of each, with how many there are."""
    def walk(folder, indent):
        entries = sorted(folder.iterdir())
        subfolders = [e for e in entries if e.is_dir()]
        names = [e.name for e in entries if e.is_file()]
        if names:
            shown = ", ".join(names[:files]) + (", ..." if len(names) > files else "")
            print(f"{indent}{len(names)} files: {shown}")
        for sub in subfolders[:folders]:
            print(f"{indent}{sub.name}/")
            walk(sub, indent + "    ")
        if len(subfolders) > folders:
            print(f"{indent}... and {len(subfolders) - folders} more folders")
    print(f"{root.name}/")
    walk(root, "    ")


# %% [markdown]
# ## Part 1: scanned digits as PNG files
#
# scikit-learn ships 1,797 handwritten digits scanned at 8x8 pixels, each pixel one of 17 grey
# levels (0 to 16). A file on disk holds bytes, so we stretch the levels to 0..255 and write
# each digit as a grey PNG.
#
# We also decide the test split ourselves, a fifth of each digit drawn at random, and write it
# into its own folder. When `DIR/train/` and `DIR/test/` both exist, cnnkit takes the two splits
# as given; that way the net and the baseline below are scored on exactly the same images.

# %%
digits = load_digits()
pixels = np.round(digits.images * 255 / 16).astype(np.uint8)      # (1797, 8, 8)
labels = digits.target

is_test = np.zeros(len(labels), bool)
for digit in range(10):
    members = rng.permutation(np.flatnonzero(labels == digit))
    is_test[members[:len(members) // 5]] = True

digit_root = work / "digits"
digit_files = []
for i, (image, label) in enumerate(zip(pixels, labels)):
    path = digit_root / ("test" if is_test[i] else "train") / str(label) / f"{i:04d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    digit_files.append(path)
print(f"{(~is_test).sum()} training and {is_test.sum()} test images written")
show_tree(digit_root)

# %% [markdown]
# That is the whole layout cnnkit needs: a `train` and a `test` folder, each holding one folder
# per class. Class k is the k-th folder name in sorted order, so here class 3 is the folder `3`.
# Had we written only the class folders, cnnkit would hold out a seeded fifth of each class
# itself (`test_size=0.2`).
#
# Here are the first training images of each digit, enlarged: at 8x8 pixels a digit is a
# coarse blob, and some (a 1 against a 7, a 5 against a 9) are close.

# %%
train_x, train_y = pixels[~is_test], labels[~is_test]
test_x, test_y = pixels[is_test], labels[is_test]
image_grid(np.concatenate([train_x[train_y == d][:12] for d in range(10)]), columns=12)

# %% [markdown]
# ### A baseline first: the nearest class mean
#
# Before training a net, ask what a trivial classifier gets. Average the training images of
# each digit into one mean image, then give each test image the class whose mean it is nearest
# to (Euclidean distance over the 64 pixels). Three lines of NumPy:

# %%
means = np.stack([train_x[train_y == d].mean(axis=0) for d in range(10)])    # (10, 8, 8)
distances = ((test_x[:, None].astype(float) - means[None]) ** 2).sum(axis=(2, 3))
baseline_digits = np.mean(distances.argmin(axis=1) == test_y)
print(f"nearest class mean: test accuracy {baseline_digits:.3f}")
image_grid(np.round(means).astype(np.uint8), columns=10, zoom=6)

# %% [markdown]
# The ten mean images (above) are blurred digits, and most test digits lie nearest their own
# class's mean: the baseline already gets most of them right. Any net has to beat that number to
# be worth its cost.
#
# ### The net
#
# `cnnkit.fit` is `cnnkit train` as one Python call. `folder:DIR` names the data; the model is a
# spec in the course's pattern notation: 3x3 convolutions with batch norm and ReLU, two 2x2 max
# pools (8x8 becomes 4x4, then 2x2), then a fully connected layer to the 10 scores. `out=` makes
# it write a run folder (checkpoints, history, the report) and `name=` names it;
# `progress=False` keeps the page free of progress bars, and `log=print` prints what it does,
# one line per epoch. By default a folder's images are augmented with random shifts
# (`augment="crop"`): each epoch sees every digit moved by up to a pixel.

# %%
DIGIT_NET = "[CONV3-32 -> BN -> RELU]*2 -> POOL2 -> CONV3-64 -> BN -> RELU -> POOL2 -> FC-10"
digit_run = cnnkit.fit(f"folder:{digit_root}", DIGIT_NET, epochs=DIGIT_EPOCHS,
                       out=work / "runs", name="digits", progress=False, log=print)

# %% [markdown]
# The first line says that cnnkit decoded the PNG files once into its cache; a second run on
# the same folder starts from there. The second line says what it trains: it held out a tenth of
# the training folder for validation, kept the weights of the best validation epoch, and scored
# those on the test folder. Both numbers, side by side:

# %%
def compare(test_count, **accuracies):
    """Print each classifier's test accuracy and its number of wrong answers."""
    print(f"{'':>20}  accuracy  wrong (of {test_count})")
    for name, accuracy in accuracies.items():
        wrong = round((1 - accuracy) * test_count)
        print(f"{name.replace('_', ' '):>20}  {accuracy:8.3f}  {wrong:5d}")


compare(len(test_y), nearest_class_mean=baseline_digits, the_net=digit_run.test_accuracy)

# %% [markdown]
# Be fair to the baseline first: it gets the large majority of the digits right, with no
# training beyond an average. The scanned digits are centred and scaled alike, so a blurred
# template per class already separates most of them. What the net adds shows in the wrong
# answers: it makes several times fewer. A template compares pixels where they are; a stroke
# moved by a pixel, thicker or thinner, or a 7 written with a bar, is far from its template,
# while the net's convolutions detect a stroke wherever it falls and combine those detections.
#
# #### Which learning rate?
#
# The run trained with Adam's default rate, 0.001 (its second line says so). The learning-rate
# range test asks the data instead: `lr_find` trains a copy of the same net, on the same
# images, batches, augmentation and seed, for a number of mini-batches while the rate grows
# exponentially from 1e-7 to 10, and reads a rate off the smoothed loss by a stated rule (by
# default a tenth of the rate where it is lowest). It trains for seconds, not epochs; the net of
# `digit_run` is not touched. `cnnkit.fit(..., lr="find")` (`cnnkit train --lr find`) runs it
# first and trains with the rate it suggests, and `cnnkit lr-find` prints it on the command
# line. The [guide](../guide/learning-rate.md) measures how well the suggestion does.

# %%
from cnnkit.lr_find import lr_find

found = lr_find(f"folder:{digit_root}", DIGIT_NET, iterations=100, progress=False)
print(found.summary())
found.plot()

# %% [markdown]
# The loss stays flat while the rate is too small to move the weights, falls once it is large
# enough, and blows up when steps overshoot. At its lowest point the steps are already on the
# edge of too large; the suggestion, a tenth of that rate, sits on the descent.
#
# ### Evaluating and predicting
#
# `run.evaluate()` scores the net on the run's test split (the `test` folder) and returns the
# predictions, the accuracy per class and the confusion matrix; printed, it is the table
# `cnnkit evaluate` prints. The confusion matrix reads best as a figure:

# %%
evaluation = digit_run.evaluate()
viz.plot_confusion_matrix(evaluation.confusion, evaluation.classes)

# %% [markdown]
# Rows are the true digits, columns what the net said; the diagonal holds the right answers,
# and the accuracy of each digit is written beside its row. Look off the diagonal for the pairs
# the net confuses.
#
# `run.predict` takes image files (any size or mode: each is decoded and preprocessed as the
# training images were) and returns the class probabilities. Here are four test files:

# %%
some_files = [digit_files[i] for i in np.flatnonzero(is_test)[:4]]
predictions = digit_run.predict(some_files)
for path, top in zip(some_files, predictions.top(3)):
    guesses = ", ".join(f"{name} ({p:.2f})" for name, p in top)
    print(f"{path.parent.name}/{path.name}: {guesses}")

# %% [markdown]
# Each line names a file by its class folder and lists the net's three most probable classes.
# Where the net is unsure, the runner-up is usually a look-alike digit.
#
# For a program rather than a reader, the same answers come as plain data.
# `evaluation.to_dict()` is what `cnnkit evaluate --json` prints (no NaN anywhere: JSON has none),
# and `predict_files` classifies every image of a folder a batch at a time, as
# `cnnkit predict CKPT FOLDER --format json|csv` does, handing each answer over as its batch is
# done:

# %%
from cnnkit.classify_files import predict_files

scores = evaluation.to_dict()
print(scores["accuracy"], scores["per_class"][3], scores["confusion"]["counts"][3])
threes = predict_files(work / "runs" / "digits" / "model.npz", [digit_root / "test" / "3"])
answers = [answer.top(1)[0][0] for answer in threes]
print(f"{len(answers)} test images of 3, called 3: {answers.count('3')}")
#
# ### The report
#
# `run.report()` writes one self-contained HTML page into the run folder, `report.html`. It
# opens with the answer (the test accuracy, the best epoch, the time trained, the data and model
# in one line, a thumbnail of the curves), then the curves, the confusion matrix and the
# misclassified test images, the settings, the layer table, the layer statistics, the filters,
# activation and saliency maps, and per-layer times. Open it in a browser. (For a run trained in
# memory, without `out=`, give it a path: `run.report("digits.html")`; `sections=` leaves parts
# out, e.g. `sections="all,-timing"`.)

# %%
report = digit_run.report()
print(report.relative_to(work), f"{report.stat().st_size / 1e6:.1f} MB")

# %% [markdown]
# Two of its figures, drawn here by the same `cnnkit.viz` functions the report uses. First the
# training curves from `run.history`: the loss of every mini-batch and of every epoch, and the
# accuracy per epoch on the training images and on the held-out validation images.

# %%
viz.plot_history(digit_run.history)

# %% [markdown]
# Both losses fall and the two accuracies stay close: the net is not memorising the training
# images. Then the test digits it gets wrong, each titled true -> predicted (probability):

# %%
test_split, _ = digit_run.test_split()          # the test images as the run read them
scores = evaluation.scores                      # (N, 10) class scores, before the softmax
probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
probabilities /= probabilities.sum(axis=1, keepdims=True)
viz.plot_misclassified(test_split.images, evaluation.labels, evaluation.predictions,
                       classes=evaluation.classes, probabilities=probabilities)

# %% [markdown]
# Many of the mistakes are digits a person would hesitate over at 8x8 pixels too.

# %% [markdown]
# ## Part 2: colour photographs cut into patches
#
# Now colour. scikit-image ships a few photographs; we take six, and the task is: given a
# 32x32 patch, which photograph was it cut from? One class per photograph.
#
# The test split needs care here. Patches cut at random positions overlap, and a test patch
# that shares most of its pixels with a training patch is not a test at all: the net (or the
# baseline) could simply recognise pixels it has seen. So each photograph is divided into
# 64x64 tiles; a quarter of the tiles, drawn at random, are test tiles, the rest training
# tiles, and every patch is cut from inside one tile. No test patch shares a pixel with a
# training patch.

# %%
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
          "hubble_deep_field"]
PATCH, TILE = 32, 64

photos = {name: getattr(skimage.data, name)()[..., :3] for name in PHOTOS}
patches = {"train": [], "test": []}
patch_labels = {"train": [], "test": []}
photo_root = work / "photos"
previews = []
for k, (name, photo) in enumerate(photos.items()):
    rows, columns = photo.shape[0] // TILE, photo.shape[1] // TILE
    tiles = [(r, c) for r in range(rows) for c in range(columns)]
    test_tiles = set(rng.permutation(len(tiles))[:len(tiles) // 4])
    preview = photo.copy()
    for t, (r, c) in enumerate(tiles):
        split = "test" if t in test_tiles else "train"
        if split == "test":     # the preview shows test tiles paled
            block = preview[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE]
            block[:] = block // 3 + 170
        for i in range(PATCHES_PER_TILE):
            y0, x0 = r * TILE + rng.integers(0, TILE - PATCH + 1), \
                c * TILE + rng.integers(0, TILE - PATCH + 1)
            patch = photo[y0:y0 + PATCH, x0:x0 + PATCH]
            path = photo_root / split / name / f"r{r}c{c}-{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(patch).save(path)
            patches[split].append(patch)
            patch_labels[split].append(k)
    previews.append(np.asarray(Image.fromarray(preview).resize((192, 144))))

for split in patches:
    patches[split] = np.stack(patches[split])
    patch_labels[split] = np.array(patch_labels[split])
print({split: len(p) for split, p in patches.items()}, "patches")
image_grid(previews, columns=3, zoom=1)

# %% [markdown]
# The six photographs, shrunk, with their test tiles paled. Each photograph gives patches of
# every part of it: the astronaut's suit and the flag, the cat's fur and the wall behind it,
# the rocket's sky and smoke. The folder has the same layout as the digits':

# %%
show_tree(photo_root)

# %% [markdown]
# And a few training patches of each class, one row per photograph:

# %%
def spread(images, count=10):
    """``count`` images spread evenly over ``images`` (the patches come tile by tile)."""
    return images[np.linspace(0, len(images) - 1, count).astype(int)]


image_grid(np.concatenate([spread(patches["train"][patch_labels["train"] == k])
                           for k in range(len(PHOTOS))]), columns=10, zoom=2)

# %% [markdown]
# ### The baseline: nearest mean colour
#
# The simplest guess for photographs: each has its own colours. Take the mean colour (R, G, B)
# of each class's training patches, and give each test patch the class whose mean colour is
# nearest to the patch's own mean colour.

# %%
train_colour = patches["train"].mean(axis=(1, 2))                  # (N, 3)
test_colour = patches["test"].mean(axis=(1, 2))
class_colour = np.stack([train_colour[patch_labels["train"] == k].mean(axis=0)
                         for k in range(len(PHOTOS))])
nearest = ((test_colour[:, None] - class_colour[None]) ** 2).sum(axis=2).argmin(axis=1)
baseline_photos = np.mean(nearest == patch_labels["test"])
print(f"nearest mean colour: test accuracy {baseline_photos:.3f}")
image_grid(np.broadcast_to(np.round(class_colour).astype(np.uint8)[:, None, None],
                           (len(PHOTOS), 16, 16, 3)), columns=6, zoom=3)

# %% [markdown]
# The six mean colours (in the order of `PHOTOS`). The colour alone is right for well over
# chance's one in six, but far from all: the astronaut, the cat and the coffee all hold brown
# and grey patches, and a dark patch of the rocket's sky looks like the Hubble field.
#
# ### The net
#
# One more convolution stage than for the digits (32x32 pools to 16, 8, then 4), and
# augmentation for photographs: random shifts and left-right mirrors (`augment="crop,flip"`;
# mirrors are wrong for digits, where a mirrored 3 is no 3, but a mirrored patch of fur is fur).

# %%
PHOTO_NET = ("[CONV3-16 -> BN -> RELU -> POOL2] -> [CONV3-32 -> BN -> RELU -> POOL2]*2"
             f" -> FC-{len(PHOTOS)}")
photo_run = cnnkit.fit(f"folder:{photo_root}", PHOTO_NET, epochs=PHOTO_EPOCHS,
                       augment="crop,flip", out=work / "runs", name="photos", progress=False,
                       log=None)
compare(len(patch_labels["test"]), nearest_mean_colour=baseline_photos,
        the_net=photo_run.test_accuracy)

# %% [markdown]
# Here the net adds a great deal. A patch's mean colour throws away everything about how the
# colours are arranged; the net sees texture and edges: fur against coffee foam, the dots of
# the stained tissue against the stars of the Hubble field. (`log=None` kept this run quiet;
# its epochs are in `photo_run.history`.)

# %%
photo_evaluation = photo_run.evaluate()
viz.plot_confusion_matrix(photo_evaluation.confusion, photo_evaluation.classes)

# %% [markdown]
# The remaining mistakes sit between photographs that share colours and textures: the cat's
# fur, the wooden table under the coffee cup and the stained tissue are all brown and grainy,
# and parts of the astronaut's photograph (her hair, her face) look like them. Some patches
# are ambiguous for anyone: a 32x32 square of smooth brown carries little of its photograph.
# And the test tiles are parts of each photograph the net never saw; more photographs of
# each kind, not more patches of one, would be the way to a classifier of fur or of coffee.
#
# ## What to take away
#
# - A folder of class folders is all `folder:DIR` needs; `train/` and `test/` subfolders fix
#   the test split, otherwise cnnkit holds out a seeded part of each class.
# - Hold the test set apart by *where the images come from*, not only by file: overlapping
#   patches, frames of one video or photos of one person leak between splits if split at random.
# - Put a trivial baseline beside every net. On the 8x8 digits a class template gets most of
#   the way; on the photo patches the mean colour does not, and the net's texture features earn
#   their cost.
#
# The [data sources guide](../guide/data.md) lists every source and what the folder source
# accepts (image modes, sizes, the cache). The next tutorial, [Inside the
# net](04_inside_the_net.py), looks at what happens inside training: callbacks, layer
# statistics and saliency maps.

# %% [markdown]
# Finally, the temporary folder goes, with everything this page wrote into it.

# %%
workspace.cleanup()
