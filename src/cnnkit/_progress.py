"""The progress bar every command shares: tqdm's when it is wanted and installed, else silent.

On a terminal the bar is tqdm's text bar on stderr. In a Jupyter notebook it is tqdm's widget
when ipywidgets is installed, else the same text bar, written to the cell's stderr output (the
notebook redraws it in place). The choice is made here rather than by ``tqdm.auto``, which
without ipywidgets warns ("IProgress not found") before falling back to text. A bar that is
only wanted on a terminal (``only_on_terminal``) draws nothing when stderr is not one (a log
file, a pipe, a notebook), so logs stay clean. A bar is a nicety: a missing tqdm never stops
the work.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["Bar", "in_notebook"]


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session: JupyterLab, Notebook, VS Code, and the
    hosted notebooks whose shell subclasses IPython's kernel shell (Colab)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:     # an IPython too old or too odd to ask: treat it as not a notebook
        return False
    return shell is not None and any(cls.__name__ == "ZMQInteractiveShell"
                                     for cls in type(shell).__mro__)


def _tqdm_class():
    """The tqdm class to draw with: the notebook widget in Jupyter when ipywidgets is
    importable, else the text bar; None without tqdm."""
    try:
        from tqdm.std import tqdm
    except ImportError:
        return None
    if in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        try:
            from tqdm.notebook import IProgress
            from tqdm.notebook import tqdm as notebook_tqdm
        except ImportError:
            return tqdm
        if IProgress is not None:          # None: an ipywidgets tqdm cannot use
            return notebook_tqdm
    return tqdm


class Bar:
    """A progress bar that does nothing when it is not wanted or tqdm is not installed.

    Use it as ``with Bar(total, desc) as bar: ... bar.update()``, or call :meth:`close`.

    Parameters
    ----------
    total : the count the bar runs to
    desc : the text before the bar
    enabled : False makes every method do nothing (``--no-progress``)
    unit : what is counted ("batch", "image")
    initial : the count already done (a resumed epoch)
    only_on_terminal : draw nothing when stderr is not a terminal (a log file, a pipe, a
        notebook): for bars that would only clutter a log
    """

    def __init__(self, total: int, desc: str = "", *, enabled: bool = True, unit: str = "it",
                 initial: int = 0, only_on_terminal: bool = False):
        self.bar = None
        if not enabled:
            return
        tqdm = _tqdm_class()
        if tqdm is None:
            return
        self.bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=False,
                        dynamic_ncols=True, disable=None if only_on_terminal else False)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more done."""
        if self.bar is not None:
            self.bar.update(n)

    def set_description(self, text: str) -> None:
        """Replace the text before the bar (drawn at the next update)."""
        if self.bar is not None:
            self.bar.set_description(text, refresh=False)

    def set_postfix(self, **values) -> None:
        """Show ``name=value`` pairs after the bar (drawn at the next update), e.g.
        ``bar.set_postfix(loss="0.1234")``."""
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        """Remove the bar; calling it again does nothing."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
