"""The ``cnnkit`` command: a thin shell over the library, one module per command (or group):

    cnnkit train          train a net on a data source (cnnkit.fit)              train.py
    cnnkit search         random search of the learning rate and weight decay   search.py
    cnnkit evaluate       accuracy, per-class accuracy and confusion matrix     use.py
    cnnkit predict        top-k classes of image files                          use.py
    cnnkit gradcheck      whole-model numerical gradient check in float64       nets.py
    cnnkit time           per-layer forward/backward times                      nets.py
    cnnkit summary        per-layer volumes, memory, parameters and FLOPs       nets.py
    cnnkit convert        FC layers -> convolutions                             nets.py
    cnnkit export         a net as ONNX, or its weights as safetensors          transfer.py
    cnnkit import         a PyTorch or safetensors state dict into a checkpoint transfer.py
    cnnkit report         one self-contained HTML page on a run                 pages.py
    cnnkit experiment     one of the notes' experiments                         pages.py

Each command parses its options, makes one library call and prints; ``main.py`` holds the
parser and the error boundary (bad input is one line on stderr and a non-zero exit; set
``CNNKIT_DEBUG=1`` or ``--debug`` to see the traceback). The options of ``train`` and
``search`` are generated from :class:`cnnkit.RunConfig` (``options.py``).
"""

from .main import build_parser, main

__all__ = ["main", "build_parser"]
