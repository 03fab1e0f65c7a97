"""``cnnkit.fit``: a whole training run in one call, what ``cnnkit train`` does.

    run = cnnkit.fit("folder:photos", "resnet20", epochs=10, out="runs")
    run.test_accuracy, run.predict("cat.jpg").labels

In order: check the settings (:class:`~cnnkit.app.config.RunConfig`); open the data; settle the
net, its input volume and the preprocessing; split off the validation images; build the net,
the optimizer and the schedule and check the memory budget; then, and only then, claim the run
folder (when ``out`` is given: nothing is written before the data and the net are known to
work); train with checkpoints, history, curves and layer statistics; save the best weights,
score the test split, and write the report when asked. Under ``mpiexec -n P`` every rank runs
this, trains its shard of each batch (:mod:`cnnkit.distributed`), and rank 0 alone prints and
writes.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np

from .._atomic import atomic_write_text
from .._lr_range import FIND, START, LRFindResult, range_test
from ..budget import scoped_memory_budget
from ..callbacks import Callback, CSVLogger, in_notebook
from ..checkpoint import load_checkpoint, save_checkpoint
from ..data import canonical_source
from ..distributed import DEFAULT_TIMEOUT, DataParallel, share_cores, together, world
from ..errors import UsageError
from ..finite import check_net
from ..monitor import LayerStats
from ..nn import Module
from ..optim import OPTIMIZERS, CosineLR, ExponentialLR, StepLR, make_optimizer
from ..parallel import get_num_threads, num_threads
from ..runs import check_folder_name, claim_run_folder
from ..summary import check_memory, eval_batch_size
from ..tensorboard import TensorBoard, check_log_dir
from ..train import Trainer, TrainingInterrupted, evaluate
from ..weights import load_weights
from ..writers import HistoryWriter, LayerStatsWriter
from .config import RunConfig, volume_text
from .inputs import (
    ARRAYS,
    augment_for,
    build_net,
    check_outputs,
    check_rebuildable,
    model_label,
    net_input,
    open_data,
    preprocessing_for,
    run_prefix,
    short,
    split_train,
)
from .run import Run

__all__ = ["fit", "train"]


def fit(data=None, model=None, *, classes=None, log="auto", callbacks=(), **settings) -> Run:
    """Train a net on data, as ``cnnkit train`` does, and return the :class:`Run`.

    Parameters
    ----------
    data : a source's text (``"mnist"``, the default; ``"folder:DIR"``, ``"cifar10:DIR"``,
        ``"npz:FILE"``), a :class:`cnnkit.data.Dataset`, or arrays ``(x, y)`` or ``(x, y,
        x_test, y_test)``: images (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 or integers
        0..255 or floats; labels (N,) or (N, 1) class indices. Raw uint8 digits need no
        preprocessing of yours: it is measured on the training split and recorded.
    model : a zoo name (``"resnet20"``), a spec (``"CONV5-6 -> RELU -> POOL2 -> FC-10"``), a
        :class:`cnnkit.nn.Module` (trained in place), or None for the data's default net
    classes : the class names of arrays given as ``data`` (default "0".."K-1")
    log : where the run's lines go (what it trains, one line per epoch, the test accuracy): a
        callable such as ``print``; "auto" (the default): ``print`` in a notebook, nothing
        elsewhere; None: nowhere
    callbacks : :class:`cnnkit.callbacks.Callback` objects of yours (or one), run by the Trainer
        after the run's own
    **settings : every option of ``cnnkit train`` by its name with underscores (``epochs``,
        ``batch_size``, ``lr``, ``val_size``, ``out``, ``name``, ``resume``, ``report``,
        ...; ``progress=False`` for ``--no-progress``); see :class:`RunConfig`. ``out=None``
        (the default) trains in memory and writes nothing; ``out="runs"`` writes a run folder
        as the command does. ``resume="runs/x/checkpoint.npz"`` continues a run with its
        recorded settings (``epochs`` may extend it).

    Returns
    -------
    Run : the net (best validation weights), history, test accuracy, classes, preprocessing
        and folder, with ``predict``, ``evaluate``, ``report`` and ``save``

    Raises
    ------
    TypeError
        For a keyword that is not a setting (with the closest name).
    CnnkitError
        For a wrong value, data or net, in one line naming it (nothing is written then).
    TrainingDiverged
        When the loss becomes NaN or infinite.
    TrainingInterrupted
        On Ctrl-C (a notebook's interrupt): the state is saved where there is a folder, and
        ``err.run`` is the partial Run.

    Under ``mpiexec -n P`` the run trains data-parallel over the P ranks, as ``cnnkit train``
    does (``sync_bn``, ``timeout``); every rank returns a Run, rank 0's with the test result.
    """
    config = RunConfig.from_keywords("fit", **settings)
    comm = world(config.timeout or DEFAULT_TIMEOUT)
    share_cores(comm, config.threads)
    return train(config, data, model, given=frozenset(settings), classes=classes, log=log,
                 callbacks=callbacks, comm=comm)


def train(config: RunConfig, data=None, model=None, *, given=frozenset(), classes=None,
          log="auto", callbacks=(), comm=None) -> Run:
    """:func:`fit` with its settings already a RunConfig (``given``: the names the user set)
    and the MPI communicator decided by the caller: None trains in this process alone (what a
    search's trials do)."""
    root = comm is None or comm.is_root
    if log == "auto":
        log = print if in_notebook() else None
    if log is not None and not callable(log):
        raise TypeError(f"fit: log must be a callable, 'auto' or None, got {type(log).__name__}")
    say = log if (log is not None and root) else (lambda *args, **kwargs: None)
    with _session(config):
        callbacks = [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
        return _train(config, data, model, given, classes, say, callbacks, comm, root,
                      None if log is None or not root else log)


@contextlib.contextmanager
def _session(config: RunConfig):
    """Within the block cnnkit's kernels use ``config.threads`` (when given) and the memory
    budget is ``config.memory_budget``'s."""
    with contextlib.ExitStack() as scope:
        if config.threads is not None:
            scope.enter_context(num_threads(config.threads))
        scope.enter_context(scoped_memory_budget(config.memory_budget))
        yield


def range_test_for_run(config: RunConfig, data=None, model=None, *, classes=None, log=None,
                       **options) -> LRFindResult:
    """:func:`cnnkit.lr_find.lr_find` with its settings a RunConfig: the data, split, net,
    preprocessing and augmentation made as :func:`train` makes them, then the range test on a
    copy of the net (``options``: :func:`cnnkit.lr_find.range_test`'s ``start``, ``end``,
    ``iterations``, ``rule``, ``beta``, ``diverge``). ``log`` gets the data's notes."""
    say = log if log is not None else (lambda *args, **kwargs: None)
    with _session(config):
        config, _, _ = _settled(config, frozenset(), data, model)
        config, dataset, label, shape, preprocessing, augment, rng, train_part, _ = _inputs(
            config, data, model, classes, say, None, True)
        net = _initial_net(config, None, model, label, shape, dataset, rng)
        return _range_test(config, net, train_part, preprocessing, augment, shape, label,
                           config.progress, **options)


def _settled(config: RunConfig, given, data, model):
    """(the run's settings, the loaded checkpoint and folder of the run being resumed, or None
    and None): from the keywords, or from the checkpoint of ``resume``."""
    if config.name is not None and config.resume is None:
        check_folder_name(config.name)        # before the data is opened, not at the claim
    if config.tensorboard is not None:
        check_log_dir(config.tensorboard)     # before the data is opened
    if config.report and config.out is None and config.resume is None:
        raise UsageError("report=True writes report.html in the run folder; give out= (or "
                         "call run.report(path) on the Run fit returns)")
    if config.resume is None:
        if isinstance(data, str):
            config = config.replace(data=data)
        if model is not None and not isinstance(model, (str, Module)):
            raise UsageError(f"model= takes a zoo name, a spec or a Module, got a "
                             f"{type(model).__name__}")
        label = model_label(model if model is not None else config.model)
        return config.replace(model=label), None, None
    if config.weights is not None:
        raise UsageError("resume= continues a run from its checkpoint; weights= starts a new "
                         "one: give one of them")
    if model is not None:
        raise UsageError("resume= continues the net saved in its checkpoint; leave model= out")
    changed = sorted(given & set(RunConfig.recorded()) - {"epochs"})
    if changed:
        raise UsageError(f"resume= continues a run with its recorded settings; only epochs "
                         f"may change, not {', '.join(changed)}")
    ckpt = load_checkpoint(config.resume)
    meta = ckpt.extra.get("metadata", {})
    if "settings" not in meta:
        raise UsageError(f"{config.resume} was not written by a training run (cnnkit train, "
                         f"cnnkit.fit): it records no run settings, so it cannot be resumed")
    recorded = RunConfig.from_record(meta["settings"], str(config.resume))
    if isinstance(data, str) and recorded.data != ARRAYS \
            and canonical_source(data) != canonical_source(recorded.data):
        raise UsageError(f"data={data!r}: the run being resumed trained on {recorded.data}")
    session = {name: getattr(config, name) for name in RunConfig.settings()
               if name not in RunConfig.recorded() or (name == "epochs" and name in given)}
    return recorded.replace(**session), ckpt, Path(config.resume).resolve().parent


def _prepared(config: RunConfig, data, model, classes, progress: bool):
    """(dataset, the net's label, its input volume, the preprocessing)."""
    dataset = open_data(data if data is not None else config.data, config, classes=classes,
                        progress=progress)
    label, shape = net_input(config, dataset.image_shape,
                             model if isinstance(model, Module) else None)
    return dataset, label, shape, preprocessing_for(dataset, label, shape, config.fit)


def _schedule(optimizer, config: RunConfig):
    if config.schedule == "cosine":
        return CosineLR(optimizer, t_max=config.epochs)
    if config.schedule == "step":
        return StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    if config.schedule == "exp":
        return ExponentialLR(optimizer, gamma=config.gamma)
    return None


def _inputs(config: RunConfig, data, model, classes, say, comm, root):
    """(config with the data, net and augmentation settled, dataset, the net's label, its
    input volume, preprocessing, augment, the seed's Generator after the split, training part,
    validation part)."""
    progress = config.progress and root
    # rank 0 first: a folder source is decoded once, into the cache the others then read
    opened = together(comm, "opening the data",
                      lambda: _prepared(config, data, model, classes, progress), ranks={0})
    if comm is not None:
        opened = together(comm, "opening the data",
                          lambda: opened or _prepared(config, data, model, classes, False))
    dataset, label, shape, preprocessing = opened
    for line in dataset.notes:
        say(line)
    augment_text, augment = augment_for(config, dataset, shape)
    config = config.replace(data=dataset.source, model=label, augment=augment_text,
                            lr=OPTIMIZERS[config.optimizer].lr if config.lr is None else config.lr)
    rng = np.random.default_rng(config.seed)
    train_part, val_part = split_train(dataset, config, rng)
    return config, dataset, label, shape, preprocessing, augment, rng, train_part, val_part


def _initial_net(config: RunConfig, resumed, model, label, shape, dataset, rng) -> Module:
    """The net the run starts from: the resumed checkpoint's, the user's Module (checked), or
    one built from ``rng``; with ``config.weights`` loaded, its values checked finite."""
    if resumed is not None:
        net = resumed.build_model()           # its weights are the checkpoint's anyway
    elif isinstance(model, Module):
        net = model
        if any(p.is_placeholder for _, p in net.named_parameters()):
            raise UsageError("the net's weights are placeholders (built under "
                             "nn.shapes_only()); load weights into it first")
        check_outputs(net, label, shape, dataset.num_classes, dataset.title)
        if config.out is not None:
            check_rebuildable(net)
    else:
        net = build_net(label, shape, dataset.num_classes, dataset.title, rng)
    if config.weights is not None:   # a checkpoint, or PyTorch's .pt or a .safetensors
        load_weights(net, config.weights, allow_nonfinite=True)      # refused just below
    check_net(net, config.resume or config.weights or "the net",
              hint="training would not remove them")
    return net


def _optimizer(config: RunConfig, net: Module, lr: float):
    return make_optimizer(config.optimizer, net.named_parameters(), lr=lr,
                          momentum=config.momentum, weight_decay=config.weight_decay)


def _range_test(config: RunConfig, net: Module, train_part, preprocessing, augment, shape,
                label, progress, **options) -> LRFindResult:
    """The range test on a copy of ``net`` (``net`` itself, its buffers and its generators
    are left as they are) with the run's optimizer, loss, batch size, seed, preprocessing and
    augmentation."""
    trial = net.copy()
    check_memory(trial, shape, config.batch_size, short(label), optimizer=config.optimizer)
    result = range_test(trial, _optimizer(config, trial, options.get("start", START)),
                        train_part.images, train_part.labels, loss=config.loss,
                        batch_size=config.batch_size, seed=config.seed,
                        preprocess=preprocessing, augment=augment, progress=progress,
                        **options)
    result.settings = {name: value for name, value in config.record().items()
                       if name not in ("lr", "epochs", "schedule", "step_size", "gamma",
                                       "layer_stats")}
    return result


def _train(config, data, model, given, classes, say, callbacks, comm, root, log) -> Run:
    config, resumed, run_dir = together(comm, "reading the run's settings",
                                        lambda: _settled(config, given, data, model))
    progress = config.progress and root
    config, dataset, label, shape, preprocessing, augment, rng, train_part, val_part = _inputs(
        config, data, model, classes, say, comm, root)

    def build():
        net = _initial_net(config, resumed, model, label, shape, dataset, rng)
        lr, found = config.lr, None
        if lr == FIND:     # every rank alike: the same data, seed and net give the same rate
            found = _range_test(config, net, train_part, preprocessing, augment, shape, label,
                                progress)
            lr = found.suggestion
        optimizer = _optimizer(config, net, lr)
        shard = config.batch_size // (1 if comm is None else comm.size)
        check_memory(net, shape, max(1, shard), short(label), optimizer=config.optimizer)
        parallel = None
        if comm is not None:
            parallel = DataParallel(comm, sync_bn=config.sync_bn)
            parallel.check_batch(config.batch_size)
        return net, optimizer, _schedule(optimizer, config), parallel, \
            eval_batch_size(net, shape), found

    net, optimizer, scheduler, parallel, eval_batch, found = together(
        comm, "building the net", build)
    if found is not None:                  # the run records the rate, not "find"
        config = config.replace(lr=found.suggestion)
        say(f"learning-rate range test: {found.summary()}")
    metadata = {"source": dataset.source, "classes": list(dataset.classes),
                **preprocessing.to_metadata(), "settings": config.record()}
    if found is not None:
        metadata["lr_find"] = found.to_dict()
    # the run folder is claimed only now that the data and the net are known to work, and
    # before anything trains: a taken name or an unwritable --out is found at once (by rank 0)
    claimed = None
    if run_dir is not None or config.out is not None:
        claimed = together(comm, "claiming the run folder", lambda: claim_run_folder(
            config.out, config.name,
            time.strftime(f"{run_prefix(config.model)}-%Y%m%d-%H%M%S"),
            overwrite=config.overwrite, resume=run_dir), ranks={0})
    with claimed or contextlib.nullcontext():
        folder = claimed if root else None
        title = f"{short(config.model)} on {dataset.title}"
        stats = None
        if config.layer_stats:
            path = folder.layer_stats if folder is not None else None
            stats = LayerStats.load(path) if resumed is not None and path is not None \
                and path.is_file() else LayerStats(config.layer_stats)
            callbacks = [stats, *callbacks]
            if folder is not None:
                callbacks.insert(1, LayerStatsWriter(stats, folder.layer_stats,
                                                     folder.layer_stats_plot, title))
        if folder is not None:
            callbacks.insert(0, HistoryWriter(folder.history, folder.curves, title=title))
            # history.json's epochs as a table; a resumed run continues it
            callbacks.insert(1, CSVLogger(folder.history_csv, append=resumed is not None))
        if config.tensorboard is not None and root:
            callbacks.insert(0, TensorBoard(config.tensorboard))
        trainer = Trainer(
            net, optimizer, loss=config.loss, scheduler=scheduler,
            batch_size=config.batch_size, epochs=config.epochs, seed=config.seed,
            preprocess=preprocessing, augment=augment,
            checkpoint=folder.checkpoint if folder is not None else None, metadata=metadata,
            progress=progress, log=log, callbacks=callbacks, eval_batch_size=eval_batch,
            distributed=parallel)
        if resumed is not None:
            trainer.resume(resumed)          # the checkpoint read once, by _settled
            trainer.epochs = config.epochs
            say(f"resuming {config.resume} at epoch {trainer.epoch + 1}/{trainer.epochs}")
        threads = get_num_threads()
        ranks = "" if comm is None else (
            f" on {comm.size} ranks x {threads} thread{'s' if threads > 1 else ''} (batch "
            f"{config.batch_size} = {comm.size} x {config.batch_size // comm.size}"
            f"{', synchronised batch norm' if config.sync_bn else ''})")
        where = f"run folder {claimed.path}" if claimed is not None else "in memory"
        say(f"training {config.model} ({net.num_parameters():,} parameters) on "
            f"{dataset.title}: {len(train_part)} train / {len(val_part)} val images "
            f"({volume_text(preprocessing.image_shape[:1])}x{preprocessing.describe()}), "
            f"{config.optimizer} lr {config.lr:g}, {config.schedule} schedule, "
            f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}, augment {config.augment}{ranks}; {where}")

        def the_run(**results) -> Run:
            return Run(model=net, preprocessing=preprocessing, classes=dataset.classes,
                       config=config, metadata=metadata, history=trainer.history,
                       folder=None if claimed is None else claimed.path, dataset=dataset,
                       best=dict(trainer.best), layer_stats=stats, **results)

        start = time.perf_counter()
        try:
            trainer.fit((train_part.images, train_part.labels),
                        (val_part.images, val_part.labels) if len(val_part) else None)
        except TrainingInterrupted as err:
            raise TrainingInterrupted(str(err), run=the_run(), signum=err.signum,
                                      at_once=err.at_once) from err
        seconds = time.perf_counter() - start
        if not root:
            return the_run(seconds=seconds)          # rank 0 saves, tests and reports
        if comm is not None:
            share = parallel.reduce_seconds / max(seconds, 1e-9)
            say(f"{parallel.steps} steps on {comm.size} ranks; the gradient allreduce took "
                f"{parallel.reduce_seconds:.1f} s ({share:.1%} of training)")
        if folder is not None:
            save_checkpoint(folder.model, net, extra={"metadata": metadata})
        saved = f"; weights in {folder.model}" if folder is not None else ""
        if trainer.best["epoch"]:
            say(f"best validation accuracy {trainer.best['val_acc']:.4f} (epoch "
                f"{trainer.best['epoch']}){saved}")
        else:
            say(f"no validation images; the weights are the last epoch's{saved}")
        test = None
        if dataset.test is None:
            say(f"trained in {seconds:.0f} s; {dataset.title} has no test split (give "
                f"--test-size to hold one out)")
        else:
            split = dataset.test.head(config.limit)
            loss, accuracy = evaluate(net, split.images, split.labels, config.loss, eval_batch,
                                      preprocessing)
            test = {"accuracy": accuracy, "loss": loss, "images": len(split)}
            if folder is not None:
                atomic_write_text(folder.test, json.dumps(test, indent=1) + "\n")
            say(f"test accuracy {accuracy:.4f} (loss {loss:.4f}, {len(split)} images) after "
                f"{seconds:.0f} s of training")
        run = the_run(test=test, seconds=seconds)
        if config.report:
            say(f"wrote {run.report(progress=progress)}")
        return run
