"""cnnkit.viz in a real Jupyter kernel: every plot function's Figure shows exactly once (one
``image/png`` output) as a cell's last expression, without pyplot, with pyplot imported, under
``%matplotlib inline`` and under Agg; an assigned figure shows nothing until displayed; the
backend is the same afterwards; and a training progress bar draws text without ipywidgets and
without a warning.

The notebook is built with nbformat and run by nbclient on an ipykernel whose python is this
test's own (a kernel spec written for the test), with ``MPLBACKEND`` unset as Jupyter leaves it;
a fourth notebook selects Agg, under which pyplot shows nothing itself.
"""

import os
import sys
import textwrap

import pytest

from cnnkit import viz

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

# one cell per plot function of cnnkit.viz, on tiny non-square inputs built by SETUP
FIGURE_CELLS = {
    "plot_history": "viz.plot_history(history)",
    "plot_runs": "viz.plot_runs({'a': history, 'b': history})",
    "plot_layer_stats": "viz.plot_layer_stats(stats)",
    "plot_filters": "viz.plot_filters(model)",
    "plot_activations": "viz.plot_activations(model, x[0])",
    "plot_saliency": "viz.plot_saliency(model, x[0], classes=['a', 'b', 'c'])",
    "plot_confusion_matrix": "viz.plot_confusion_matrix(viz.confusion_matrix(y, predicted, 3))",
    "plot_misclassified": "viz.plot_misclassified(x, y, predicted)",
}

SETUP = """\
import sys
import matplotlib
import numpy as np
from cnnkit import nn, optim, viz
from cnnkit.monitor import LayerStats
from cnnkit.train import Trainer

backend_before = matplotlib.get_backend()
rng = np.random.default_rng(0)
model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(4 * 5 * 3, 3, rng=rng))
x = rng.standard_normal((24, 1, 10, 6)).astype(np.float32)
y = rng.integers(0, 3, 24)
stats = LayerStats(every=1)
trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=8, epochs=2,
                  progress=False, log=None, callbacks=[stats])
trainer.fit((x, y), (x, y))
history = trainer.history
predicted = model.forward(x).argmax(axis=1)
"""

PROGRESS = """\
Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=8, epochs=1,
        log=None).fit((x, y))
"""

ASSIGNED = "fig = viz.plot_history(history)"
DISPLAYED = "from IPython.display import display\ndisplay(fig)"

AFTER = """\
assert matplotlib.get_backend() == backend_before, (backend_before, matplotlib.get_backend())
print("pyplot imported:", "matplotlib.pyplot" in sys.modules)
"""

# what runs before SETUP in each notebook
PRELUDES = {"no pyplot": "", "pyplot imported": "import matplotlib.pyplot as plt",
            "inline": "%matplotlib inline",
            "agg": "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt"}


def _kernel_spec(folder):
    """A kernel spec named "cnnkit-test" that starts this interpreter's ipykernel."""
    import json

    spec = folder / "kernels" / "cnnkit-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cnnkit test", "language": "python"}))
    return folder


def _run(cells, tmp_path):
    """Execute the code cells in a fresh kernel; returns the executed notebook."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(code)) for code in cells]
    specs = KernelSpecManager(kernel_dirs=[str(_kernel_spec(tmp_path) / "kernels")])
    km = KernelManager(kernel_name="cnnkit-test", kernel_spec_manager=specs)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}   # as Jupyter starts one
    client = nbclient.NotebookClient(nb, km=km, timeout=120, allow_errors=False,
                                     resources={"metadata": {"path": str(tmp_path)}})
    return client.execute(env=env, cwd=str(tmp_path))


def _images(cell) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.outputs)


def _bare_figure_texts(cell) -> list:
    """Outputs that show a Figure only as its text, ``<Figure size 1000x400 with 2 Axes>``."""
    return [out for out in cell.outputs if "data" in out and set(out["data"]) == {"text/plain"}
            and "<Figure" in out["data"]["text/plain"]]


def _stderr(cell) -> str:
    return "".join(out.get("text", "") for out in cell.outputs
                   if out.get("output_type") == "stream" and out.get("name") == "stderr")


def test_every_plot_function_has_a_cell():
    assert set(FIGURE_CELLS) == {name for name in viz.__all__ if name.startswith("plot_")}


@pytest.mark.parametrize("prelude", list(PRELUDES))
def test_each_figure_shows_exactly_once(prelude, tmp_path):
    cells = [PRELUDES[prelude], SETUP, *FIGURE_CELLS.values(), ASSIGNED, DISPLAYED, PROGRESS,
             AFTER]
    nb = _run(cells, tmp_path)
    setup, figures = nb.cells[1], nb.cells[2:2 + len(FIGURE_CELLS)]
    assigned, displayed, progress, after = nb.cells[2 + len(FIGURE_CELLS):]
    assert _images(setup) == 0
    shown = {name: _images(cell) for name, cell in zip(FIGURE_CELLS, figures)}
    assert shown == dict.fromkeys(FIGURE_CELLS, 1), prelude
    assert not [out for cell in figures for out in _bare_figure_texts(cell)]
    # an assigned figure shows nothing; display() shows it once
    assert _images(assigned) == 0 and _images(displayed) == 1
    # the progress bar draws text on the notebook's stderr, without a warning
    text = "".join(_stderr(cell) for cell in nb.cells)
    assert "epoch 1/1" in _stderr(progress) and "batch" in _stderr(progress)
    assert "Warning" not in text and "IProgress" not in text, text
    # the backend is the one the notebook had; cnnkit never imports pyplot itself
    printed = "".join(out.get("text", "") for out in after.outputs)
    assert f"pyplot imported: {prelude != 'no pyplot'}" in printed
