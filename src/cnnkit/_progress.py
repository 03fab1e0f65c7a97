"""The progress bar every command shares: tqdm's when it is wanted and installed, else silent.

``tqdm.auto`` draws a widget in a Jupyter notebook and text on a terminal. With ``disable=None``
tqdm draws nothing when stderr is not a terminal (a log file, a pipe), so logs stay clean. A bar
is a nicety: a missing tqdm never stops the work.
"""

from __future__ import annotations

__all__ = ["Bar"]


class Bar:
    """``Bar(total, desc, enabled=...)``: ``update(n)``, ``set_description(text)``,
    ``set_postfix(**values)`` and ``close()`` (or ``with Bar(...) as bar:``) do nothing when
    the bar is not ``enabled`` or tqdm is not installed.

    ``unit`` names what is counted; ``initial`` is the count already done (a resumed epoch);
    ``only_on_terminal`` leaves the bar out when stderr is not a terminal.
    """

    def __init__(self, total: int, desc: str = "", *, enabled: bool = True, unit: str = "it",
                 initial: int = 0, only_on_terminal: bool = False):
        self.bar = None
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=False,
                        dynamic_ncols=True, disable=None if only_on_terminal else False)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def set_description(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description(text, refresh=False)

    def set_postfix(self, **values) -> None:
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
