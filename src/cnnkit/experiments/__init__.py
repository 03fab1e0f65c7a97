"""The notes' experiments as commands: ``cnnkit experiment NAME`` or :func:`run_experiment`.

Each experiment is a module here holding a ``Config`` dataclass (defaults: minutes on 2 cores;
``Config.full()``: the published scale) and ``run(config, folder, rng, progress)``:

    vanishing-gradients   vanishing.py       sigmoid vs ReLU, gradient per layer
    covariate-shift       covariate.py       the batch-norm paper's Figure 1
    bn-init               bn_init.py         CS231n assignment 2: batch norm vs weight scale
    dropout-modes         dropout_modes.py   upscale_in_train vs downscale_in_infer
    fc-to-conv            fc_to_conv.py      ConvNet notes: an FC net slid over a larger image
    lr-find               lr_find.py         the range test's suggested rate against a grid
    small-batch           small_batch.py     the group-norm paper's Figure 1: error against batch

:func:`run_experiment` claims the results folder ``OUT/NAME`` (``-2``, ``-3``, ... when taken;
see :mod:`cnnkit.runs`), runs one, writes its PNGs and ``results.json`` (settings, seed, numbers,
targets, timings), and prints a table of the key numbers. An experiment whose ``Config`` has a
``data`` field runs on the source ``--data`` names (:func:`takes_data`). The modules are imported
only when run, so that ``cnnkit --help`` stays quick.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from dataclasses import dataclass
from pathlib import Path

from .._atomic import atomic_write_text
from ..runs import LOCK, RunFolderError, check_folder_name, claim_run_folder

__all__ = ["EXPERIMENTS", "Experiment", "run_experiment", "takes_data"]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its ``summary`` (for ``--help``) and the module that runs it."""

    name: str
    summary: str
    module: str

    def load(self):
        """The experiment's module (``Config``, ``run``)."""
        return importlib.import_module(f"{__name__}.{self.module}")


#: The notes' experiments by name: the one home of their summaries (listing them imports
#: no experiment).
EXPERIMENTS = {e.name: e for e in (
    Experiment("vanishing-gradients",
               "per-layer gradient norms of a deep sigmoid net against a ReLU net", "vanishing"),
    Experiment("covariate-shift",
               "the batch-norm paper's Figure 1, accuracy and sigmoid-input percentiles with and "
               "without BN", "covariate"),
    Experiment("bn-init",
               "accuracy of a deep net with and without batch norm across weight-init scales",
               "bn_init"),
    Experiment("dropout-modes",
               "expected train output against test output for both dropout modes",
               "dropout_modes"),
    Experiment("fc-to-conv",
               "an FC classifier converted to convs slides over a larger image in one pass",
               "fc_to_conv"),
    Experiment("lr-find",
               "the learning-rate range test's suggestion against a grid of rates, on MNIST and "
               "a folder of PNG digits", "lr_find"),
    Experiment("small-batch",
               "the group-norm paper's Figure 1, test error against batch size for batch, group "
               "and layer norm", "small_batch"),
)}


def takes_data() -> list[str]:
    """The experiments whose ``Config`` has a ``data`` field, which ``--data`` sets."""
    return [name for name, entry in EXPERIMENTS.items() if _has_data(entry.load().Config)]


def _has_data(config) -> bool:
    """Whether a ``Config`` (class or instance) has a ``data`` field."""
    return any(field.name == "data" for field in dataclasses.fields(config))


def run_experiment(experiment, *, out="experiments", name=None, overwrite=False, full=False,
                   seed=0, progress=True, log=print, config=None, data=None) -> dict:
    """Run one experiment and write its figures and ``results.json`` to a new folder under ``out``.

    Parameters
    ----------
    experiment : one of ``EXPERIMENTS``
    out : the parent folder of the results folder
    name : the results folder's name (default: the experiment's, with -2, -3, ... when taken)
    overwrite : let ``name`` replace a folder that already holds results
    full : the published scale (``Config.full()``) instead of the default
    seed : seeds the one ``numpy.random.default_rng`` everything random is drawn from
    progress : show tqdm bars
    log : called with each line of the printed table
    config : the experiment module's ``Config`` to run instead of the default (small ones make
        quick checks); not with ``full``
    data : a data source (``cifar10:DIR``, ``folder:DIR``, ...) to run on instead of the
        config's, for an experiment whose ``Config`` has a ``data`` field (small-batch)

    Returns
    -------
    dict : what ``results.json`` holds (JSON types: lists, not arrays; None for NaN), and
        ``folder``, the results folder's path

    Raises
    ------
    ValueError
        An unknown experiment, a bad setting, ``config`` given with ``full``, or ``data`` given
        to an experiment that takes none.
    OSError
        The results folder cannot be claimed or written (:class:`cnnkit.runs.RunFolderError`).
    """
    # Imported at a run, not at the top: `cnnkit --help` lists EXPERIMENTS from this module, and
    # its start-up stays cheap without NumPy and what common imports (the Trainer, the data).
    import numpy as np

    from .common import format_table, jsonable, to_json  # cheap start-up, as above

    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of "
                         f"{', '.join(EXPERIMENTS)}")
    entry = EXPERIMENTS[experiment]
    module = entry.load()
    if config is None:
        config, scale = (module.Config.full() if full else module.Config()), \
            ("full" if full else "default")
    elif full:
        raise ValueError("run_experiment: give config or full=True, not both")
    elif not isinstance(config, module.Config):
        raise TypeError(f"run_experiment: config for {experiment} must be a "
                        f"{module.__name__}.Config, got {type(config).__name__}")
    else:
        scale = "default" if config == module.Config() else "custom"
    if data is not None:
        if not _has_data(config):
            raise ValueError(f"{experiment} has its data fixed and takes no --data; "
                             f"--data is for {', '.join(takes_data())}")
        config = dataclasses.replace(config, data=data)
    try:
        config.check()
    except ValueError as err:
        raise ValueError(f"{experiment}: {err}") from None
    if name is not None and not overwrite:
        # claim_run_folder would refuse too, but suggest a training run's --resume
        path = Path(out) / check_folder_name(name, "results folder")
        if path.is_dir() and any(e.name != LOCK for e in path.iterdir()):
            raise RunFolderError(f"{path} already holds results; choose another --name, or "
                                 f"pass --overwrite to replace them")

    with claim_run_folder(out, name, default_name=experiment, overwrite=overwrite,
                          files=("results.json", *module.FIGURES),
                          what="results folder") as folder:
        start = time.perf_counter()
        outcome = module.run(config, folder.path, np.random.default_rng(seed), progress)
        total = time.perf_counter() - start
        results = jsonable({
            "experiment": experiment,
            "summary": entry.summary,
            "scale": scale,
            "seed": seed,
            "settings": dataclasses.asdict(config),
            "results": outcome.numbers,
            "targets": [{"target": what, "met": bool(met)} for what, met in outcome.targets],
            "figures": list(outcome.figures),
            "timings": {"total_s": total, **outcome.timings},
        })
        atomic_write_text(folder.path / "results.json", to_json(results))
        path = folder.path

    log(f"cnnkit experiment {experiment} ({scale} scale, seed {seed}): {total:.1f} s")
    for line in format_table(outcome.rows):
        log(line)
    for what, met in outcome.targets:
        log(f"  [{'met' if met else 'NOT met'}] {what}")
    log(f"figures and results.json in {path}")
    results["folder"] = str(path)
    return results
