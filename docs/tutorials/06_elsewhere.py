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
# # Taking a net elsewhere
#
# cnnkit is written to be read, not to serve predictions at scale. A net you trained with it
# may need to run somewhere else: in a server, on a phone, beside code that uses PyTorch. And a
# net trained elsewhere may be worth studying with cnnkit's tools. Three file formats carry a
# net across:
#
# - **ONNX** holds the whole computation, layers and weights, as a graph that runtimes such as
#   onnxruntime execute without cnnkit or Python.
# - **safetensors** holds the weights only, as named arrays, in a format that cannot run code
#   when it is loaded.
# - **PyTorch's `.pt`** files, written by `torch.save(model.state_dict(), ...)`, hold weights
#   too; cnnkit reads them without PyTorch.
#
# Weights move by name. cnnkit's layers are named as PyTorch names them (`0.weight`,
# `1.running_var`, ...), so a PyTorch module with the same layers in the same order takes
# cnnkit's weights as they are, and the other way round. We train a small net, send it out in
# each format, check that the other side computes the same scores, and bring a net trained in
# PyTorch back in.

# %%
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import onnx
import onnxruntime
import safetensors.numpy
import safetensors.torch
import torch

import cnnkit
from cnnkit import data, export, io, weights
from cnnkit.models import zoo

# Default scale: each net (cnnkit's, then the PyTorch twin) trains on 5,000 digits for 2
# epochs; the page runs in about 30 s on 2 cores. Full scale (CNNKIT_FULL_SCALE=1): 60,000
# digits for 3 epochs each, two to three minutes on 2 cores, for nets worth deploying.
FULL_SCALE = os.environ.get("CNNKIT_FULL_SCALE") == "1"
TRAIN_IMAGES, EPOCHS = (60_000, 3) if FULL_SCALE else (5_000, 2)

torch.manual_seed(0)
workdir = tempfile.TemporaryDirectory()     # every file this page writes goes here,
home = os.getcwd()                          # and we work inside it, so that file names
os.chdir(workdir.name)                      # print short

# %% [markdown]
# ## A net to take along
#
# The default net for digits, `lenet-bn` (LeNet-5 with batch norm), trained on a slice of the
# MNIST copy that ships with cnnkit. Batch norm makes the trip more interesting: its running
# mean and variance are state that must travel with the weights.

# %%
x, y = data.load_mnist("train")
x_test, y_test = data.load_mnist("test")
run = cnnkit.fit((x[:TRAIN_IMAGES], y[:TRAIN_IMAGES], x_test[:2000], y_test[:2000]),
                 "lenet-bn", epochs=EPOCHS, seed=0, progress=False, log=print)
checkpoint = run.save("digits.npz")
model = run.model.eval()                   # evaluation mode: batch norm uses its running stats

# %% [markdown]
# The run measured a mean and a standard deviation on its training images and normalises
# every input with them. Whatever runs the net elsewhere must do the same, so we keep the
# run's `preprocessing`, which turns stored uint8 digits into the net's float32 input:

# %%
prep = run.preprocessing
batch = prep(x_test[:500, None])           # (N, 1, 28, 28) uint8 -> normalised float32
scores = model(batch)
print(prep.describe(), "| mean", round(prep.mean[0], 4), "std", round(prep.std[0], 4))
print(batch.shape, batch.dtype, "->", scores.shape)

# %% [markdown]
# ## ONNX: the whole net, run by onnxruntime
#
# `export.to_onnx` writes the net's evaluation forward pass as an ONNX graph: each cnnkit layer
# writes its own operators, weights are stored as float32 under their state-dict names, and the
# batch size is left free. `served_metadata` adds what a server needs to know besides the
# graph: the class names and the normalisation.

# %%
metadata = export.served_metadata({"classes": list(run.classes), **prep.to_metadata()})
onnx_path = "digits.onnx"
export.to_onnx(model, (1, 28, 28), onnx_path, metadata=metadata)

graph = onnx.load(onnx_path)
print(textwrap.fill("operators: " + ", ".join(node.op_type for node in graph.graph.node), 90))
print("metadata:", sorted(prop.key for prop in graph.metadata_props))

# %% [markdown]
# Notice the operators: the convolutions, batch norms, ReLUs and pools appear one for one, and
# each fully connected layer is a `Gemm` (a matrix product plus bias). Now run the file with
# onnxruntime, which knows nothing of cnnkit, on the same normalised batch:

# %%
session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
print("inputs:", [(i.name, i.shape) for i in session.get_inputs()],
      "outputs:", [(o.name, o.shape) for o in session.get_outputs()])
served = session.run(None, {"input": batch})[0]
print(f"largest difference from cnnkit's scores: {np.abs(served - scores).max():.1e} "
      f"(scores up to {np.abs(scores).max():.1f})")
print("same predictions:", np.array_equal(served.argmax(axis=1), scores.argmax(axis=1)))

# %% [markdown]
# The scores agree to float32 rounding: both sides add the same products, in different orders.
# The input's batch axis is `N`, so the server may send any number of images at once.
#
# ### With its preprocessing
#
# That server still had to divide by 255 and normalise by hand, from the metadata. With
# `preprocessing=` the graph does it: it takes the digits as stored, uint8 (N, 28, 28), applies
# /255, the fit (none here; centre or resize for images of another size than the net's input)
# and the mean and std, runs the net and ends in a softmax. Its input is `images` and its
# output `probabilities`, which should be `predict_images`' own:

# %%
whole_path = "digits-whole.onnx"
export.to_onnx(model, (1, 28, 28), whole_path, preprocessing=prep, metadata=metadata)
whole = onnxruntime.InferenceSession(whole_path, providers=["CPUExecutionProvider"])
print("inputs:", [(i.name, i.type, i.shape) for i in whole.get_inputs()])
raw = x_test[:500]                          # uint8 (500, 28, 28), nothing done to them
probabilities = whole.run(None, {"images": raw})[0]
expected = cnnkit.predict_images(checkpoint, raw).probabilities
print(f"largest difference from predict_images: {np.abs(probabilities - expected).max():.1e}")
recorded = json.loads(whole.get_modelmeta().custom_metadata_map["cnnkit.preprocessing"])
print("left to the server:", *(textwrap.fill(step, 88, initial_indent="- ",
                                             subsequent_indent="  ")
                               for step in recorded["server_steps"]), sep="\n")

# %% [markdown]
# What the graph cannot do is decode a file, and the metadata says so: `server_steps` lists
# decoding to the training images' channels and size and, for a grey net like this one,
# inverting a photo of dark ink on white paper, as `cnnkit predict` does.
#
# ## safetensors: the weights, under PyTorch's names
#
# A safetensors file is a small JSON header (names, shapes, dtypes, offsets) followed by the
# raw bytes of the arrays. Loading it reads numbers and nothing else, which is why model hubs
# prefer it to pickled files. `io.save_safetensors` writes the net's state dict:

# %%
st_path = io.save_safetensors(model, "digits.safetensors")
arrays = safetensors.numpy.load_file(st_path)          # the safetensors package, no cnnkit
for name in list(model.state_dict())[:6]:
    print(f"{name:<24} {str(arrays[name].shape):<14} {arrays[name].dtype}")
print(f"... {len(arrays)} arrays in all")

# %% [markdown]
# The names are PyTorch's: module `0` (the first convolution) has a `weight`, module `1` (its
# batch norm) a `weight` (gamma), a `bias` (beta), its running statistics and the count of
# batches it has seen. So a PyTorch module built with the same layers in the same order takes
# these arrays directly. Here is LeNet-5 with batch norm written in PyTorch, layer for layer:

# %%
def torch_twin():
    """cnnkit's lenet-bn in PyTorch: the same layers, so the same state-dict names."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


twin = torch_twin()
twin.load_state_dict(safetensors.torch.load_file(st_path))   # strict: every name must match
twin.eval()
with torch.no_grad():
    twin_scores = twin(torch.from_numpy(batch)).numpy()
gap = np.abs(twin_scores - scores).max()
print(f"PyTorch with cnnkit's weights: largest difference {gap:.1e}")

# %% [markdown]
# `load_state_dict` is strict by default, so a misspelled or missing name would have failed
# loudly: every array found its place. The way back into cnnkit is `io.load_safetensors`,
# which checks each name and shape and says what it matched:

# %%
again = zoo.get_model("lenet-bn")
match = io.load_safetensors(again, st_path)
print(match.describe())
print("identical scores:", np.array_equal(again.eval()(batch), scores))

# %% [markdown]
# The round trip is exact, bit for bit: safetensors stores the float32 values themselves.
#
# ## PyTorch weights in
#
# Now the other direction: a net trained in PyTorch, brought into cnnkit to be studied. We
# train a fresh twin with PyTorch's own training loop, from PyTorch's own initialisation, on
# the same images normalised the same way:

# %%
trained = torch_twin()
optimizer = torch.optim.Adam(trained.parameters(), lr=2e-3)
images = torch.from_numpy(prep(x[:TRAIN_IMAGES, None]))
labels = torch.from_numpy(y[:TRAIN_IMAGES].astype(np.int64))
trained.train()
for epoch in range(EPOCHS):
    order = torch.randperm(len(labels))
    for start in range(0, len(labels), 64):
        rows = order[start:start + 64]
        loss = torch.nn.functional.cross_entropy(trained(images[rows]), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
trained.eval()
with torch.no_grad():
    torch_scores = trained(torch.from_numpy(batch)).numpy()
print(f"PyTorch's accuracy on {len(batch)} test digits: "
      f"{(torch_scores.argmax(axis=1) == y_test[:len(batch)]).mean():.3f}")

pt_path = "twin.pt"
torch.save(trained.state_dict(), pt_path)

# %% [markdown]
# A `.pt` file is a zip archive holding a pickle, and unpickling can run any code the file
# names. cnnkit reads it with NumPy alone, through an unpickler that admits only what rebuilds a
# tensor and the containers of a state dict (as `torch.load(weights_only=True)` does):

# %%
state = io.load_torch_state_dict(pt_path)
print({name: array.shape for name, array in list(state.items())[:4]}, "...")

imported = zoo.get_model("lenet-bn")
match = weights.load_weights(imported, pt_path)          # pairs every array by name
print(match.describe())
cnnkit_scores = imported.eval()(batch)
gap = np.abs(cnnkit_scores - torch_scores).max()
print(f"cnnkit with PyTorch's weights: largest difference {gap:.1e}")
print("same predictions:",
      np.array_equal(cnnkit_scores.argmax(axis=1), torch_scores.argmax(axis=1)))

# %% [markdown]
# The two frameworks compute the same scores from the same weights. From here every cnnkit tool
# applies to the PyTorch net: its summary, its filters, its saliency maps.
#
# Why the restricted reader matters: a file that asks to call anything else is refused before
# the call can happen. This one asks the unpickler to call `print` while loading (a real attack
# would call `os.system`):

# %%
class Payload:
    def __reduce__(self):
        return (print, ("this line would mean the file ran code while loading",))


torch.save({"0.weight": torch.zeros(3), "trap": Payload()}, "trap.pt")
try:
    io.load_torch_state_dict("trap.pt")
except cnnkit.CnnkitError as error:
    print(type(error).__name__ + ":", error)

# %% [markdown]
# One line naming the file and what it tried to call, and nothing printed by the payload.
#
# ## The same from the command line
#
# `cnnkit export CHECKPOINT -o FILE` writes ONNX or safetensors by the file's extension, taking
# the class names and normalisation from the checkpoint (`--include-preprocessing` puts them
# in the graph, as above); `cnnkit import FILE --model NAME -o
# CHECKPOINT` builds the net, loads a `.pt` or `.safetensors` file into it with the same checks,
# and saves a checkpoint. `--mean` and `--std` record the normalisation the PyTorch net was
# trained with, since a state dict does not say. We run both commands as a shell would:

# %%
def cnnkit_command(*args):
    """Run `cnnkit ARGS...` in a child process and print what it says (an error stops the page)."""
    result = subprocess.run([sys.executable, "-m", "cnnkit", *map(str, args)],
                            capture_output=True, text=True, check=False)
    print("$ cnnkit", " ".join(map(str, args)))
    print((result.stdout + result.stderr).strip())
    if result.returncode:
        raise RuntimeError(f"cnnkit {args[0]} exited with status {result.returncode}")


cnnkit_command("export", checkpoint, "-o", "from-cli.onnx")
cnnkit_command("export", checkpoint, "-o", "whole-from-cli.onnx", "--include-preprocessing")
cnnkit_command("import", pt_path, "--model", "lenet-bn", "-o", "twin.npz",
               "--mean", f"{prep.mean[0]:.6f}", "--std", f"{prep.std[0]:.6f}")

# %% [markdown]
# The imported checkpoint behaves like any other: `cnnkit.predict_images` reads its recorded
# normalisation and takes the digits as stored.

# %%
prediction = cnnkit.predict_images("twin.npz", x_test[:12])
print("predicted:", " ".join(prediction.labels))
print("true:     ", " ".join(str(label) for label in y_test[:12]))

# %%
os.chdir(home)
workdir.cleanup()

# %% [markdown]
# Where next: [More cores and machines](07_cores_and_machines.py) trains on several processes;
# the guide's page on [exporting and importing](../guide/transfer.md) lists every option,
# including pairing arrays by position for nets whose modules are named differently
# (torchvision's `resnet18`).
