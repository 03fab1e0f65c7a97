"""The shared progress bar picks its tqdm itself: text on a terminal and, in a notebook without
ipywidgets, text on the cell's stderr with no "IProgress not found" warning (the notebook test,
tests/viz/test_notebook_figures.py, runs it in a real kernel)."""

import sys
import types
import warnings

import pytest
from tqdm.std import tqdm as text_tqdm

from cnnkit import _progress
from cnnkit._progress import Bar, in_notebook


class ZMQInteractiveShell:
    """Named as IPython's kernel shell, which is what in_notebook looks for."""


class HostedShell(ZMQInteractiveShell):
    """A hosted notebook's shell (Colab's subclasses the kernel shell)."""


def _ipython(monkeypatch, shell):
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", fake)


@pytest.mark.parametrize("shell, expected", [(ZMQInteractiveShell(), True),
                                             (HostedShell(), True), (object(), False),
                                             (None, False)])
def test_in_notebook_knows_a_kernel_shell_and_its_subclasses(monkeypatch, shell, expected):
    _ipython(monkeypatch, shell)
    assert in_notebook() is expected


def test_a_notebook_without_ipywidgets_gets_the_text_bar_and_no_warning(monkeypatch, capsys):
    _ipython(monkeypatch, ZMQInteractiveShell())
    real_find_spec = _progress.importlib.util.find_spec
    monkeypatch.setattr(_progress.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ipywidgets" else real_find_spec(name, *a))
    assert _progress._tqdm_class() is text_tqdm
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Bar(3, "epoch 1/1", unit="batch") as bar:
            bar.update()
    assert not caught
    assert "epoch 1/1" in capsys.readouterr().err


def test_ipywidgets_tqdm_cannot_use_falls_back_to_text(monkeypatch):
    """ipywidgets found but unusable by tqdm (its IProgress is None): the text bar."""
    _ipython(monkeypatch, ZMQInteractiveShell())
    monkeypatch.setattr(_progress.importlib.util, "find_spec", lambda name, *a: object())
    notebook = types.ModuleType("tqdm.notebook")
    notebook.IProgress, notebook.tqdm = None, object
    monkeypatch.setitem(sys.modules, "tqdm.notebook", notebook)
    assert _progress._tqdm_class() is text_tqdm
    notebook.IProgress = object
    assert _progress._tqdm_class() is object          # usable: the widget


def test_a_bar_only_wanted_on_a_terminal_draws_nothing_into_a_pipe(capsys):
    with Bar(3, "decoding", only_on_terminal=True) as bar:
        bar.update(3)
    with Bar(3, "off", enabled=False) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
