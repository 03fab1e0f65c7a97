"""The ``cnnkit`` command: train, evaluate, predict, gradcheck, time.

    cnnkit train                     train a net on a data source (--data), print test accuracy
    cnnkit evaluate CKPT             accuracy, per-class accuracy and confusion matrix
    cnnkit predict CKPT IMAGE...     top-k classes of image files
    cnnkit gradcheck                 whole-model numerical gradient check in float64
    cnnkit time MODEL                per-layer forward/backward times (Caffe's `caffe time`)

Bad input (an unknown option, a missing or corrupt checkpoint or data file, an unreadable image,
an input the model cannot take) ends with one line on stderr and a non-zero exit, no traceback
(set CNNKIT_DEBUG=1 to see the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .parallel import MAX_THREADS

EXIT_ERROR, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 1, 130, 141

SCHEDULES = ("cosine", "step", "exp", "none")


class CLIError(Exception):
    """A problem with the user's input, reported as one line."""


# ---------------------------------------------------------------------------- optimizers


def _schedule(optimizer, name: str, epochs: int, step_size: int, gamma: float):
    from . import optim

    if name == "cosine":
        return optim.CosineLR(optimizer, t_max=epochs)
    if name == "step":
        return optim.StepLR(optimizer, step_size=step_size, gamma=gamma)
    if name == "exp":
        return optim.ExponentialLR(optimizer, gamma=gamma)
    return None


# ---------------------------------------------------------------------------- train


def _model_label(text: str) -> str:
    """A zoo model's registry name, or a spec in its canonical form."""
    from .models import canonical_name, spec

    return spec.describe(text) if spec.is_spec(text) else canonical_name(text)


def _output_shape(model, input_shape) -> tuple:
    """The per-example output shape of ``model`` on ``input_shape``, traced without running it."""
    return tuple(model.output_shape(tuple(input_shape)))


def _run_prefix(label: str) -> str:
    """The start of a run folder's name: the zoo name, or "spec" for a pattern spec."""
    from .models import spec

    return "spec" if spec.is_spec(label) else label


def _volume(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def _decode_hint(settings: dict) -> tuple:
    """(channels, (H, W)) a folder's images are decoded to, from --input, a spec's INPUT or a
    zoo model's designed size; None where nothing says (the first image decides)."""
    from .models import input_shape_of, spec

    text = settings["model"]
    if settings.get("input"):
        c, h, w = settings["input"]
        return c, (h, w)
    if text == "default":
        return None, None
    if spec.is_spec(text):
        given = spec.parse(text).input_shape
        return (None, None) if given is None else (given[0], tuple(given[1:]))
    return None, tuple(input_shape_of(text)[1:])


def _net_input(settings: dict, image_shape: tuple) -> tuple[str, tuple]:
    """The model to build (the default one resolved) and the input volume it takes: --input, a
    spec's INPUT, a zoo model's designed H x W on the images' channels, or the images' own
    volume (a spec without INPUT, the default net)."""
    from .models import default_model_for, input_shape_of, spec

    text, given = settings["model"], settings.get("input")
    if text == "default":
        shape = tuple(given) if given else image_shape
        return default_model_for(shape), shape
    if spec.is_spec(text):
        declared = spec.parse(text).input_shape
        if declared is not None and given and tuple(declared) != tuple(given):
            raise CLIError(f"--input {_volume(given)} disagrees with the spec's "
                           f"INPUT[{_volume(declared)}]")
        shape = tuple(declared or given or image_shape)
        spec.trace(text, shape)   # a spec error echoes the user's text with a caret
        return text, shape
    if given:
        return text, tuple(given)
    return text, (image_shape[0], *input_shape_of(text)[1:])


def _training_data(settings: dict, progress: bool):
    """Open the run's data source and settle what the net takes: (dataset, model text with the
    default resolved, input volume, Preprocessing)."""
    from .data import Preprocessing, choose_fit, open_source

    channels, size = _decode_hint(settings)
    dataset = open_source(settings["data"], channels=channels, size=size,
                          test_size=settings["test_size"], seed=settings["seed"],
                          skip_bad=settings["skip_bad"], progress=progress)
    dataset.check_trainable()
    image_shape = dataset.image_shape
    text, shape = _net_input(settings, image_shape)
    if shape[0] != image_shape[0]:
        raise CLIError(f"{text} takes {_volume(shape)} input; {dataset.title} images are "
                       f"{_volume(image_shape)} (the net needs {image_shape[0]} channel"
                       f"{'s' if image_shape[0] > 1 else ''}; give --input or a spec's INPUT "
                       f"with {image_shape[0]})")
    fit = choose_fit(image_shape[1:], shape[1:], settings["fit"])
    mean, std = dataset.channel_stats()
    preprocessing = Preprocessing(image_shape, shape, mean, std, fit, dataset.brightness())
    return dataset, text, shape, preprocessing


def _build_for(text: str, shape: tuple, num_classes: int, title: str, rng):
    """The model ``text`` on ``shape`` input; it must give ``num_classes`` scores."""
    from .models import build_model

    model, _ = build_model(text, shape, num_classes=num_classes, rng=rng)
    out = _output_shape(model, shape)
    if out != (num_classes,):
        raise CLIError(f"{text} gives outputs of shape {out} per image; {title} has "
                       f"{num_classes} classes (end the spec with FC-{num_classes})")
    return model


def _val_count(val_size, n: int) -> int:
    """--val-size as a count for n training images: a count (at most n - 1), a fraction, or by
    default a tenth of them up to 5,000."""
    if val_size is None:
        return min(5000, n // 10)
    count = int(round(val_size * n)) if val_size < 1 else int(val_size)
    if count >= n:
        raise CLIError(f"--val-size {val_size:g} leaves no training images out of {n}; give "
                       f"fewer (or a fraction such as 0.1)")
    return count


def _train_settings(args) -> dict:
    """The options that define a run; stored in the checkpoint so --resume rebuilds the run."""
    from .optim import OPTIMIZERS

    lr = args.lr if args.lr is not None else OPTIMIZERS[args.optimizer].lr
    model = args.model if args.model == "default" else _model_label(args.model)
    if args.input and len(args.input) != 3:
        raise CLIError(f"--input takes the net's volume CxHxW, such as 3x32x32, got "
                       f"{_volume(args.input)}")
    return {
        "data": args.data,
        "model": model,
        "input": list(args.input) if args.input else None,
        "fit": args.fit,
        "test_size": args.test_size,
        "skip_bad": args.skip_bad,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": lr,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "schedule": args.schedule,
        "step_size": args.step_size,
        "gamma": args.gamma,
        "seed": args.seed,
        "val_size": args.val_size,
        "loss": args.loss,
        "limit": args.limit,
        "augment": args.augment,
        "layer_stats": args.layer_stats,
    }


def _resumed_settings(meta: dict) -> dict:
    """A checkpoint's run settings, with what runs from before data sources had filled in: they
    trained on the default source, and their "crop" was its own augmentation."""
    from .data import DEFAULT_SOURCE

    settings = dict(meta["settings"])
    if "data" not in settings:
        settings.update(data=DEFAULT_SOURCE, input=None, fit="auto", test_size=None,
                        skip_bad=False)
        if settings.get("augment") == "crop":
            settings["augment"] = "auto"
    settings.setdefault("layer_stats", 0)      # runs from before LayerStats recorded none
    return _checked_settings(settings)


def _checked_settings(settings: dict) -> dict:
    """Run settings read from a checkpoint, each checked as the command line checks it."""
    from .data import FITS
    from .optim import OPTIMIZERS

    def text(value):
        if not isinstance(value, str):
            raise ValueError("not a text")
        return value

    def number(parse):
        return lambda value: parse(str(value)) if isinstance(value, (int, float)) \
            and not isinstance(value, bool) else parse("not a number")

    def optional(check):
        return lambda value: None if value is None else check(value)

    def one_of(choices):
        return lambda value: value if value in choices else text(None)

    def volume(value):
        if not (isinstance(value, list) and len(value) == 3 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
            raise ValueError("not a volume [C, H, W]")
        return value

    checks = {"data": text, "model": text, "input": optional(volume), "fit": one_of(FITS),
              "test_size": optional(number(_fraction)), "skip_bad": one_of((True, False)),
              "epochs": number(_passes), "batch_size": number(_positive_int),
              "optimizer": one_of(tuple(OPTIMIZERS)), "lr": number(_non_negative_float),
              "momentum": number(_non_negative_float),
              "weight_decay": number(_non_negative_float), "schedule": one_of(SCHEDULES),
              "step_size": number(_positive_int), "gamma": number(_non_negative_float),
              "seed": number(_count), "val_size": optional(number(_count_or_fraction)),
              "loss": one_of(("softmax", "svm")), "limit": optional(number(_positive_int)),
              "augment": text, "layer_stats": number(_every)}
    for key, check in checks.items():
        if key not in settings:
            raise CLIError(f"the checkpoint's run settings have no {key!r}")
        try:
            settings[key] = check(settings[key])
        except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
            raise CLIError(f"the checkpoint's run settings are damaged: {key} = "
                           f"{settings[key]!r} ({err})") from None
    return settings


def _check_memory(model, shape: tuple, batch: int, label: str, *, dtype="float32",
                  optimizer="adam", training=True) -> None:
    """Refuse, before anything runs, a step whose memory (:func:`cnnkit.summary.step_memory`)
    would exceed the budget; ``training=False`` counts a forward pass only."""
    from .budget import check_bytes
    from .summary import step_memory, summarize

    if training:
        need = step_memory(model, shape, batch, dtype=dtype, optimizer=optimizer)
        what = "a training step"
    else:
        s = summarize(model, shape, batch=batch, dtype=dtype)
        need = s.forward_bytes * batch + (s.im2col[1] * s.im2col[2] * s.itemsize * batch
                                          if s.im2col else 0)
        what = "a forward pass"
    check_bytes(need, f"{what} of {label} on {batch} x {_volume(shape)} ({dtype})")


def _eval_batch(model, shape: tuple) -> int:
    """Images per evaluation pass: up to 1000, as many as keep the forward pass's activations
    within ``summary.EVAL_BYTES`` (one at least, which must fit the memory budget)."""
    from .summary import images_within

    batch = images_within(model, shape, most=1000)
    if batch == 1:
        _check_memory(model, shape, 1, "the net", training=False)
    return batch


def _run_settings(args):
    """(the run's settings, the folder of the run being resumed, its loaded checkpoint): from the
    command line (the last two None), or from the checkpoint of --resume (its settings checked;
    --epochs may extend it)."""
    from .io import load_checkpoint

    if not args.resume:
        return _train_settings(args), None, None
    ckpt = load_checkpoint(args.resume)
    meta = ckpt.extra.get("metadata", {})
    if "settings" not in meta:
        raise CLIError(f"{args.resume} was not written by `cnnkit train` (no run settings); it "
                       f"cannot be resumed from the command line")
    try:
        settings = _resumed_settings(meta)
    except CLIError as err:
        raise CLIError(f"{args.resume}: {err}") from None
    if args.epochs_given:
        settings["epochs"] = args.epochs
    return settings, Path(args.resume).resolve().parent, ckpt


def _short(text: str) -> str:
    """A model's name for a message: the spec's text unless it is long."""
    return text if len(text) < 60 else "the spec"


def _train_comm(args):
    """The MPI communicator when this `cnnkit train` is one rank of several (under mpiexec),
    else None; ``args.comm`` set by a caller (``cnnkit search`` sets None) decides instead."""
    comm = getattr(args, "comm", "auto")
    if comm != "auto":
        return comm
    from . import distributed

    comm = distributed.world(args.timeout or distributed.DEFAULT_TIMEOUT)
    distributed.share_cores(comm, args.threads)
    return comm


def cmd_train(args) -> int:
    comm = _train_comm(args)
    if comm is None:
        return _train(args, None)
    args.active_comm = comm           # the error boundary (main) tells the other ranks
    if comm.is_root:
        return _train(args, comm)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        return _train(args, comm)     # rank 0 alone prints


def _train(args, comm) -> int:
    """`cnnkit train` in one process, or as one rank of ``comm``: every rank builds the same
    data, net and optimizer; rank 0 alone claims the run folder, shows progress and writes."""
    from .data import Augment, split_indices
    from .io import save_checkpoint
    from .optim import make_optimizer
    from .runs import claim_run_folder
    from .callbacks import HistoryWriter
    from .parallel import get_num_threads as parallel_threads
    from .train import Trainer, TrainingInterrupted, evaluate

    from .distributed import together

    root = comm is None or comm.is_root

    settings, run_dir, resumed = together(comm, "reading the run's settings",
                                          lambda: _run_settings(args))
    progress = not args.no_progress and root
    # rank 0 first: a folder source is decoded once, into the cache the others then read
    opened = together(comm, "opening the data", lambda: _training_data(settings, progress),
                      ranks={0})
    if comm is not None:
        opened = together(comm, "opening the data",
                          lambda: opened or _training_data(settings, False))
    dataset, text, shape, preprocessing = opened
    for line in dataset.notes:
        print(line)
    if settings["model"] == "default":
        settings["model"] = text            # the run records the net the data chose
    if _spec_without_input(settings["model"]):
        settings["model"] = f"INPUT[{_volume(shape)}] -> {settings['model']}"
    if settings["augment"] == "auto":
        settings["augment"] = dataset.default_augment
    augment = Augment.parse(settings["augment"], shape[1:])

    rng = np.random.default_rng(settings["seed"])
    train = dataset.train.head(settings["limit"])
    val_count = _val_count(settings["val_size"], len(train))
    train_idx, val_idx = split_indices(len(train), val_count, rng)
    train_part, val_part = train.subset(train_idx), train.subset(val_idx)

    def build():
        model = _build_for(settings["model"], shape, dataset.num_classes, dataset.title, rng)
        if args.weights:      # a checkpoint, or PyTorch's .pt or a .safetensors under its names
            from .weights import load_weights

            load_weights(model, args.weights)
        optimizer = make_optimizer(settings["optimizer"], model.named_parameters(),
                                   lr=settings["lr"], momentum=settings["momentum"],
                                   weight_decay=settings["weight_decay"])
        scheduler = _schedule(optimizer, settings["schedule"], settings["epochs"],
                              settings["step_size"], settings["gamma"])
        shard = settings["batch_size"] // (1 if comm is None else comm.size)
        _check_memory(model, shape, max(1, shard), _short(settings["model"]),
                      optimizer=settings["optimizer"])
        data_parallel = None
        if comm is not None:
            from .distributed import DataParallel

            data_parallel = DataParallel(comm, sync_bn=args.sync_bn)
            data_parallel.check_batch(settings["batch_size"])
        return model, optimizer, scheduler, data_parallel, _eval_batch(model, shape)

    model, optimizer, scheduler, data_parallel, eval_batch = together(comm, "building the net",
                                                                      build)
    metadata = {"source": dataset.source, "classes": list(dataset.classes),
                **preprocessing.to_metadata(), "settings": settings}
    # the run folder is claimed only now that the data and the net are known to work, and before
    # anything trains: a taken name or an unwritable --out is found at once (by rank 0)
    folder = together(comm, "claiming the run folder", lambda: claim_run_folder(
        args.out, args.name,
        time.strftime(f"{_run_prefix(settings['model'])}-%Y%m%d-%H%M%S"),
        overwrite=args.overwrite, resume=run_dir), ranks={0})
    with folder or contextlib.nullcontext():
        run_dir = folder.path if root else None
        callbacks = []
        if root:
            title = f"{_short(settings['model'])} on {dataset.title}"
            callbacks.append(HistoryWriter(run_dir / "history.json", run_dir / "curves.png",
                                           title=title))
            if settings["layer_stats"]:
                callbacks.extend(_layer_stats_callback(run_dir, settings["layer_stats"], title,
                                                       resumed=args.resume is not None))
        trainer = Trainer(
            model,
            optimizer,
            loss=settings["loss"],
            scheduler=scheduler,
            batch_size=settings["batch_size"],
            epochs=settings["epochs"],
            seed=settings["seed"],
            preprocess=preprocessing,
            augment=augment,
            checkpoint=run_dir / "checkpoint.npz" if root else None,
            metadata=metadata,
            progress=progress,
            log=print if root else None,
            callbacks=callbacks,
            eval_batch_size=eval_batch,
            distributed=data_parallel,
        )
        if args.resume:
            trainer.resume(resumed)          # the checkpoint read once, by _run_settings
            trainer.epochs = settings["epochs"]
            print(f"resuming {args.resume} at epoch {trainer.epoch + 1}/{trainer.epochs}")
        ranks = "" if comm is None else (
            f" on {comm.size} ranks x {parallel_threads()} thread"
            f"{'s' if parallel_threads() > 1 else ''} (batch {settings['batch_size']} = "
            f"{comm.size} x {settings['batch_size'] // comm.size}"
            f"{', synchronised batch norm' if args.sync_bn else ''})")
        print(
            f"training {settings['model']} ({model.num_parameters():,} parameters) on "
            f"{dataset.title}: {len(train_part)} train / {len(val_part)} val images "
            f"({_volume(preprocessing.image_shape[:1])}x{preprocessing.describe()}), "
            f"{settings['optimizer']} lr {settings['lr']:g}, {settings['schedule']} schedule, "
            f"{settings['epochs']} epochs, augment {settings['augment']}{ranks}; run folder "
            f"{run_dir}"
        )
        start = time.perf_counter()
        try:
            trainer.fit((train_part.images, train_part.labels),
                        (val_part.images, val_part.labels) if len(val_part) else None)
        except TrainingInterrupted as err:
            if root:
                print(
                    f"cnnkit train: {err}; resume with: cnnkit train --resume "
                    f"{run_dir / 'checkpoint.npz'}",
                    file=sys.stderr,
                )
            return EXIT_INTERRUPTED
        train_time = time.perf_counter() - start
        if not root:
            return 0                         # rank 0 saves, tests and reports
        if comm is not None:
            share = data_parallel.reduce_seconds / max(train_time, 1e-9)
            print(f"{data_parallel.steps} steps on {comm.size} ranks; the gradient allreduce "
                  f"took {data_parallel.reduce_seconds:.1f} s ({share:.1%} of training)")
        save_checkpoint(run_dir / "model.npz", model, extra={"metadata": metadata})
        best = trainer.best
        if best["epoch"]:
            print(f"best validation accuracy {best['val_acc']:.4f} (epoch {best['epoch']}); "
                  f"weights in {run_dir / 'model.npz'}")
        else:
            print(f"no validation images; weights of the last epoch in {run_dir / 'model.npz'}")
        if dataset.test is None:
            print(f"trained in {train_time:.0f} s; {dataset.title} has no test split (give "
                  f"--test-size to hold one out)")
        else:
            test = dataset.test.head(settings["limit"])
            test_loss, test_acc = evaluate(model, test.images, test.labels, settings["loss"],
                                           eval_batch, preprocessing)
            print(
                f"test accuracy {test_acc:.4f} (loss {test_loss:.4f}, {len(test)} images) "
                f"after {train_time:.0f} s of training"
            )
        if args.report:
            from .report import write_report

            print(f"wrote {write_report(run_dir, progress=progress)}")
        return 0


def _layer_stats_callback(run_dir: Path, every: int, title: str, resumed: bool):
    """LayerStats every ``every`` iterations, saved after every epoch (layer_stats.json) and
    drawn when training ends, finished or interrupted (layer_stats.png: the figure takes about
    a second, too long to redraw every epoch); a resumed run continues the saved records."""
    from .callbacks import LambdaCallback
    from .monitor import LayerStats
    from .viz import close, plot_layer_stats

    path = run_dir / "layer_stats.json"
    stats = LayerStats.load(path) if resumed and path.exists() else LayerStats(every)

    def save(*_):
        stats.save(path)

    def save_and_draw(logs):
        save()
        if stats.iterations:
            close(plot_layer_stats(stats, run_dir / "layer_stats.png",
                                   title=f"Per-layer statistics: {title}"))

    # on_train_end runs however fit ends, Ctrl-C included, so it needs no on_interrupt twin
    return [stats, LambdaCallback(on_epoch_end=save, on_train_end=save_and_draw)]


def _spec_without_input(text: str) -> bool:
    from .models import spec

    return spec.is_spec(text) and spec.parse(text).input_shape is None


# ---------------------------------------------------------------------------- evaluate


def _same_classes(dataset, classes) -> None:
    """A source that names its classes must name the checkpoint's, in its order."""
    if classes is None or all(c.isdigit() for c in dataset.classes):
        return
    if tuple(dataset.classes) != tuple(classes):
        raise CLIError(f"{dataset.title} has classes {', '.join(dataset.classes)}; the net was "
                       f"trained on {', '.join(classes)}")


def cmd_evaluate(args) -> int:
    from .inference import load_for_inference, recorded_source, reopen_data
    from .train import predict
    from .viz import confusion_matrix, per_class_accuracy

    model, preprocessing, classes, meta = load_for_inference(args.checkpoint)
    if not (args.data or recorded_source(meta)):
        raise CLIError(f"{args.checkpoint} does not record the data it was trained on; pass "
                       f"--data SOURCE")
    dataset = reopen_data(meta, preprocessing, args.data, skip_bad=args.skip_bad,
                          progress=not args.no_progress)
    for line in dataset.notes:
        print(line)
    _same_classes(dataset, classes)
    split_name = args.split or ("test" if dataset.test is not None else "all")
    split = dataset.split(split_name)
    labels = split.labels
    scores = predict(model, split.images, _eval_batch(model, preprocessing.input_shape),
                     preprocessing)
    num_classes = scores.shape[1]
    if labels.size and labels.max() >= num_classes:
        raise CLIError(f"{dataset.title}: label {labels.max()} is out of range for a net with "
                       f"{num_classes} classes")
    pred = scores.argmax(axis=1)
    confusion = confusion_matrix(labels, pred, num_classes)
    names = classes or [str(i) for i in range(num_classes)]
    width = max(5, len(str(confusion.max())) + 1, *(len(n) + 1 for n in names))
    label_width = max(4, *(len(n) for n in names))
    print(f"{dataset.title} {split_name}: {len(labels)} images, accuracy "
          f"{np.mean(pred == labels):.4f}")
    print("per-class accuracy:")
    for c, acc in enumerate(per_class_accuracy(confusion)):
        print(f"  {names[c]:>{label_width}}  {acc:.4f}  ({confusion[c, c]}/{confusion[c].sum()})")
    print("confusion matrix (rows: true class, columns: predicted):")
    print(" " * (label_width + 3) + "".join(f"{names[c]:>{width}}" for c in range(num_classes)))
    for c in range(num_classes):
        print(f"  {names[c]:>{label_width}} " + "".join(f"{v:>{width}}" for v in confusion[c]))
    return 0


# ---------------------------------------------------------------------------- predict


def cmd_predict(args) -> int:
    from .inference import predict_images

    result = predict_images(args.checkpoint, args.images, invert=args.invert)
    for path, top in zip(args.images, result.top(args.top_k)):
        print(f"{path}: " + "  ".join(f"{name} {p:.3f}" for name, p in top))
    return 0


# ---------------------------------------------------------------------------- gradcheck


def cmd_gradcheck(args) -> int:
    from .gradcheck import check_model
    from .models import build_model
    from .nn import shapes_only

    rng = np.random.default_rng(args.seed)
    with shapes_only():
        sketch, shape = build_model(args.model, _input_option(args))
    _check_memory(sketch, shape, args.batch, "the net", dtype="float64", optimizer="sgd")
    model, shape = build_model(args.model, _input_option(args), rng=rng)
    model.astype(np.float64)
    if args.eval:
        model.eval()
    out = _output_shape(model, shape)
    if len(out) != 1:
        raise CLIError(f"{args.model} gives outputs of shape {out} per example; a loss needs a "
                       f"vector of class scores")
    x = rng.standard_normal((args.batch, *shape))
    y = rng.integers(0, out[0], args.batch)
    num_checks = args.num_checks
    if num_checks is None and model.num_parameters() > 5000:
        num_checks = 20
    errors = check_model(model, x, y, args.loss, reg=args.reg, num_checks=num_checks, rng=rng)
    params = dict(model.named_parameters())
    print(
        f"gradient check of {args.model} ({model.num_parameters():,} parameters) in float64, "
        f"{args.loss} loss, batch {args.batch}, "
        f"{'all entries' if num_checks is None else f'{num_checks} random entries per parameter'}"
    )
    print(f"  {'parameter':<24} {'shape':<20} {'rel error':>10}")
    worst = 0.0
    for name, err in errors.items():
        flag = "" if err < args.tol else "  FAIL"
        if err == 0.0:
            flag = "  (gradient identically zero, e.g. a bias before batch norm)"
        print(f"  {name:<24} {str(params[name].shape):<20} {err:>10.2e}{flag}")
        worst = max(worst, err)
    print(
        f"max relative error {worst:.2e} ({'pass' if worst < args.tol else 'FAIL'}: "
        f"threshold {args.tol:g})"
    )
    return 0 if worst < args.tol else EXIT_ERROR


# ---------------------------------------------------------------------------- time


def add_folder_options(p, out: str, folder: str, default_name: str, holds: str) -> None:
    """``--out``, ``--name`` and ``--overwrite``: where a command writes its ``folder`` (a run
    folder, a results folder), never over one that ``holds`` something unless asked."""
    p.add_argument("--out", default=out,
                   help=f"parent folder of {folder}s (default: %(default)s)")
    p.add_argument("--name", default=None,
                   help=f"{folder} name (default: {default_name}, with -2, -3, ... when taken)")
    p.add_argument("--overwrite", action="store_true",
                   help=f"let --name replace a {folder} that already holds {holds}")


def _add_common_options(p) -> None:
    """--threads, --memory-budget and --debug, which every command takes."""
    p.add_argument(
        "--threads", type=_threads, default=None,
        help="threads for cnnkit's kernels (default: CNNKIT_NUM_THREADS, else the cores this "
        "process may use); results are the same on any count. NumPy's BLAS runs at 1 thread "
        "inside them")
    p.add_argument(
        "--memory-budget", type=_size, metavar="SIZE", default=None,
        help="refuse work estimated to need more memory than this, e.g. 8G (default: "
        "CNNKIT_MEMORY_BUDGET, else the memory the system reports available)")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an error (as CNNKIT_DEBUG=1 does)")


def _blas_threads():
    """The thread count of NumPy's BLAS (a list if its libraries differ)."""
    from threadpoolctl import threadpool_info

    counts = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
    return counts[0] if len(counts) == 1 else (counts or None)


def cmd_experiment(args) -> int:
    from .experiments import run_experiment

    run_experiment(args.experiment, out=args.out, name=args.name, overwrite=args.overwrite,
                   full=args.full, seed=args.seed, progress=not args.no_progress, log=print)
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    path = write_report(args.run_dir, args.output, progress=not args.no_progress)
    print(f"wrote {path}")
    return 0


def cmd_time(args) -> int:
    from . import parallel
    from .models import build_model
    from .nn import shapes_only
    from .optim import Adam
    from .timing import time_layers

    name = _model_label(args.model)
    rng = np.random.default_rng(args.seed)
    with shapes_only():
        sketch, shape = build_model(args.model, _input_option(args))
    _check_memory(sketch, shape, args.batch, _short(name), dtype=args.dtype)
    model, shape = build_model(args.model, _input_option(args), rng=rng)
    model.astype(args.dtype).train()
    x = rng.standard_normal((args.batch, *shape)).astype(args.dtype)
    optimizer = Adam(model.named_parameters(), lr=1e-3)
    threads, blas = parallel.get_num_threads(), _blas_threads()
    prof = time_layers(model, x, iterations=args.iterations, warmup=args.warmup,
                       optimizer=optimizer, rng=rng, input_grad=False)
    print(
        f"cnnkit time {name}: batch {args.batch} x {'x'.join(map(str, shape))}, {args.dtype}, "
        f"{model.num_parameters():,} parameters; median of {args.iterations} passes after "
        f"{args.warmup} warm-up; {threads} thread{'s' if threads != 1 else ''} (BLAS "
        f"{'unknown' if blas is None else blas} inside the kernels)"
    )
    width = max(len(r.layer) for r in prof.rows)
    name_width = max(4, *(len(r.name) for r in prof.rows))
    print(f"  {'#':>3}  {'name':<{name_width}}  {'layer':<{width}}  {'output':<18}"
          f"{'forward ms':>11}{'backward ms':>13}")
    for r in prof.rows:
        print(f"  {r.index:>3}  {r.name:<{name_width}}  {r.layer:<{width}}  "
              f"{str(r.output_shape):<18}{r.forward_ms:>11.3f}{r.backward_ms:>13.3f}")
    print(
        f"forward {prof.forward_ms:.3f} ms, backward {prof.backward_ms:.3f} ms, Adam update "
        f"{prof.update_ms:.3f} ms; training step {prof.step_ms:.3f} ms "
        f"({args.batch / (prof.step_ms * 1e-3):,.0f} images/s)"
    )
    if args.json:
        from ._atomic import atomic_write_text

        report = {"model": name, "batch": args.batch, "dtype": args.dtype, "threads": threads,
                  "blas_threads": blas,
                  "parameters": model.num_parameters(), **prof.to_dict()}
        path = atomic_write_text(args.json, json.dumps(report, indent=1))
        print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------- summary


def _names_a_file(text: str) -> bool:
    """Whether ``text`` is the path of a file; False for text no path can be (a spec longer
    than a file name may be, one with a NUL byte)."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def _model_argument(text: str, input_shape, rng, *, weights: bool = True,
                    num_classes: int | None = None):
    """MODEL on the command line: a checkpoint (.npz, its architecture and weights), a zoo name or
    a spec. Returns (model, input volume, label, the checkpoint's metadata or {}). With
    ``weights=False`` a zoo model or spec is built without drawing weights (``nn.shapes_only``):
    enough for everything but running it. ``num_classes`` sets a zoo model's classifier."""
    from .models import build_model, spec
    from .nn import shapes_only

    if _model_is_checkpoint(text):
        if num_classes is not None:
            raise CLIError("--num-classes applies to a zoo model, not a checkpoint")
        from .io import load_checkpoint

        ckpt = load_checkpoint(text)
        metadata = ckpt.extra.get("metadata", {})
        recorded = metadata.get("input_shape")
        shape = input_shape or (tuple(recorded) if recorded else None)
        if shape is None:
            raise CLIError(f"{text} does not record its input volume; pass --input CxHxW")
        return ckpt.build_model(), tuple(shape), text, metadata
    if num_classes is not None and spec.is_spec(text):
        raise CLIError("--num-classes applies to a zoo model; a spec's last FC-n sets its own")
    with shapes_only() if not weights else contextlib.nullcontext():
        model, shape = build_model(text, input_shape, rng=rng, num_classes=num_classes)
    return model, shape, _model_label(text), {}


def _model_is_checkpoint(text: str) -> bool:
    return text.endswith(".npz") or _names_a_file(text)


def cmd_summary(args) -> int:
    from .summary import format_layers, format_notes, summarize

    model, shape, label, _ = _model_argument(args.model, _input_option(args),
                                             np.random.default_rng(0), weights=False)
    report = summarize(model, shape, batch=args.batch, dtype=args.dtype,
                       optimizer=args.optimizer)
    print(f"cnnkit summary {label}: input {'x'.join(map(str, shape))} (CxHxW), batch "
          f"{args.batch}, {args.dtype}, {args.optimizer}")
    print(format_notes(report) if args.notes else format_layers(report))
    if args.json:
        from ._atomic import atomic_write_text

        data = {"model": label, "input_shape": list(shape), **report.as_dict()}
        print(f"wrote {atomic_write_text(args.json, json.dumps(data, indent=1))}")
    return 0


# ---------------------------------------------------------------------------- convert


def cmd_convert(args) -> int:
    from .convert import fully_convolutional, inexact_reasons, output_stride, score_map_size
    from .nn import brief

    model, shape, label, original = _model_argument(args.model, _input_option(args),
                                                    np.random.default_rng(0),
                                                    weights=bool(args.output))
    model.eval()
    converted = fully_convolutional(model, shape)
    stride = output_stride(model, shape)
    print(f"cnnkit convert {label}: input {'x'.join(map(str, shape))} (CxHxW); the FC layers "
          f"become convolutions:")
    for i, layer in enumerate(converted):
        print(f"  {i:>3}  {brief(layer)}")
    sh, sw = stride
    print(f"output stride {sh}x{sw}: score map[i, j] holds the scores of the "
          f"{shape[1]}x{shape[2]} crop at (i*{sh}, j*{sw})")
    if args.image:
        if args.image[0] != shape[0]:
            raise CLIError(f"--image has {args.image[0]} channels, the net takes {shape[0]}")
        h, w = score_map_size(converted, args.image)
        print(f"on a {'x'.join(map(str, args.image))} image: a {h}x{w} score map "
              f"(({args.image[1]} - {shape[1]})/{sh} + 1 = {h}) in one forward pass")
    reasons = inexact_reasons(model)
    if reasons:
        print("approximate, not exact, at every crop position:")
        for reason in reasons[:3]:
            print(f"  - {reason}")
        if len(reasons) > 3:
            print(f"  - and {len(reasons) - 3} more layers like these")
    else:
        print("exact: the score map equals the original net run on every crop")
    if args.output:
        from .io import save_checkpoint

        kept = {k: v for k, v in original.items() if k not in ("input_shape", "settings")}
        metadata = {**kept, "converted_from": label, "crop_shape": list(shape),
                    "output_stride": list(stride)}
        path = save_checkpoint(args.output, converted, extra={"metadata": metadata})
        print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------- export


def _export_metadata(metadata: dict) -> dict:
    """What an exported file records of a checkpoint's metadata, for whoever serves it: the
    class names and the preprocessing (the mean and std to normalise with, the image size)."""
    kept = {}
    if metadata.get("classes"):
        kept["cnnkit.classes"] = metadata["classes"]
    fields = ("image_shape", "input_shape", "mean", "std", "fit", "brightness")
    if all(k in metadata for k in ("mean", "std", "input_shape")):
        kept["cnnkit.preprocessing"] = {k: metadata[k] for k in fields if k in metadata}
    return kept


def cmd_export(args) -> int:
    output = Path(args.output)
    kind = output.suffix.lower()
    if kind not in (".onnx", ".safetensors"):
        raise CLIError(f"-o {args.output}: the file must end in .onnx (the net) or "
                       f".safetensors (its weights)")
    if kind == ".safetensors" and (args.batch != "dynamic" or args.opset != _DEFAULT_OPSET
                                   or args.external_data):
        raise CLIError("--batch, --opset and --external-data apply to an .onnx file, not to "
                       ".safetensors")
    model, shape, label, metadata = _model_argument(args.model, _input_option(args),
                                                    np.random.default_rng(args.seed),
                                                    num_classes=args.num_classes)
    model.eval()
    out_shape = _output_shape(model, shape)
    if kind == ".onnx":
        from .export import to_onnx

        to_onnx(model, shape, output, opset=args.opset, batch=args.batch,
                metadata=_export_metadata(metadata), doc=f"{label}, exported by cnnkit",
                external_data=args.external_data or None)
        batch = "N" if args.batch == "dynamic" else str(args.batch)
        print(f"wrote {output}: ONNX opset {args.opset}, input \"input\" "
              f"{batch}x{_volume(shape)}, output \"output\" {batch}x{_volume(out_shape)}, "
              f"{model.num_parameters():,} parameters")
    else:
        from .io import save_safetensors

        save_safetensors(model, output, metadata={
            key: json.dumps(value) for key, value in _export_metadata(metadata).items()})
        print(f"wrote {output}: {len(model.state_dict())} tensors under PyTorch's names "
              f"(safetensors.torch.load_file reads them)")
    if not _model_is_checkpoint(args.model):
        print(f"note: {label} is built here with freshly drawn weights (seed {args.seed}), not "
              f"trained ones; export a checkpoint for those")
    return 0


# ---------------------------------------------------------------------------- import


def cmd_import(args) -> int:
    from .inference import UNKNOWN_NORMALISATION
    from .io import save_checkpoint
    from .weights import WeightsError, load_weights

    if _model_is_checkpoint(args.model):
        raise CLIError(f"--model {args.model}: give the architecture (a zoo name or a spec) the "
                       f"weights are for, not a checkpoint")
    output = Path(args.output)
    if output.suffix.lower() != ".npz":
        raise CLIError(f"-o {args.output}: a cnnkit checkpoint is an .npz file")
    if output.exists() and not args.overwrite:
        raise CLIError(f"{output} exists; pass --overwrite to replace it")
    # without --partial every weight comes from the file, so none is drawn
    model, shape, label, _ = _model_argument(args.model, _input_option(args),
                                             np.random.default_rng(args.seed),
                                             weights=args.partial, num_classes=args.num_classes)
    for option in ("mean", "std"):
        values = getattr(args, option)
        if values is not None and len(values) != shape[0]:
            raise CLIError(f"--{option} gives {len(values)} values; the net takes {shape[0]} "
                           f"channel{'s' if shape[0] > 1 else ''}")
    try:
        match = load_weights(model, args.file, by=args.by, strict=not args.partial)
    except WeightsError as err:
        if err.match is not None and not err.match.ok:
            print(err.match.problems())     # the listing on stdout; stderr has the one line
        raise
    print(match.describe())
    if not match.ok:                 # --partial: say what was left alone
        print(match.problems())
    metadata = {"input_shape": list(shape), "imported_from": str(args.file), "model": label,
                **_recorded_preprocessing(args.file, shape)}
    if args.mean is not None or args.std is not None:
        metadata.update(mean=list(args.mean or [0.0] * shape[0]),
                        std=list(args.std or [1.0] * shape[0]))
        metadata.pop(UNKNOWN_NORMALISATION, None)
    path = save_checkpoint(output, model.eval(), extra={"metadata": metadata})
    print(f"wrote {path}: {label} on {_volume(shape)} input, {model.num_parameters():,} "
          f"parameters")
    if metadata.get(UNKNOWN_NORMALISATION):
        print("note: the file does not say how its net's inputs were normalised; predict and "
              "evaluate refuse this checkpoint until you import with --mean and --std")
    return 0


def _recorded_preprocessing(weights_file, shape: tuple) -> dict:
    """The class names and preprocessing a file exported by cnnkit records (`cnnkit export -o
    *.safetensors`), when it is for this input volume; else the mark that the normalisation
    is unknown, which predict and evaluate refuse rather than guess."""
    from .inference import UNKNOWN_NORMALISATION
    from .weights import WeightsError, safetensors_header, weights_format

    recorded = {}
    try:
        if weights_format(weights_file) == "safetensors":
            recorded = safetensors_header(weights_file)[1]
    except WeightsError:
        pass
    kept = {}
    try:
        preprocessing = json.loads(recorded.get("cnnkit.preprocessing", "null"))
        classes = json.loads(recorded.get("cnnkit.classes", "null"))
    except (json.JSONDecodeError, RecursionError):
        preprocessing = classes = None
    if isinstance(preprocessing, dict) and preprocessing.get("input_shape") == list(shape):
        kept.update(preprocessing)
    else:
        kept[UNKNOWN_NORMALISATION] = True
    if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
        kept["classes"] = classes
    return kept


def _floats(text):
    """--mean/--std: comma-separated numbers, one per channel."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, such as "
                                         f"0.485,0.456,0.406, got {text!r}") from None
    if not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _batch_arg(text):
    """--batch: "dynamic" or a positive int."""
    if text == "dynamic":
        return text
    return _argument(int, lambda v: 1 <= v <= 2 ** 31 - 1,
                     "\"dynamic\" or a batch size from 1 to 2,147,483,647")(text)


_DEFAULT_OPSET = 17       # cnnkit.export.DEFAULT_OPSET, without importing it at start-up


# ---------------------------------------------------------------------------- parser


_MODEL_HELP = ('a spec such as "INPUT[1x28x28] -> CONV5-6 -> RELU -> POOL2 -> FC-10" or a zoo '
               "name: ")


def _volume_arg(text):
    """CxHxW (the notes' volumes are HxWxC; the command line takes NCHW's order) -> a tuple."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected a volume CxHxW such as 3x224x224, got {text!r}")
    if max(shape) > 2 ** 31 - 1:
        raise argparse.ArgumentTypeError(f"sizes go up to {2 ** 31 - 1:,}, got {text!r}")
    return shape


def _add_model_argument(p, models, checkpoint: bool = False) -> None:
    """The MODEL positional (a spec or a zoo name, and a checkpoint where it may be) and
    --input."""
    p.add_argument("model", metavar="MODEL",
                   help=("a checkpoint (.npz), " if checkpoint else "") + _MODEL_HELP
                   + ", ".join(models))
    _add_input_option(p)


def _add_input_option(p) -> None:
    p.add_argument("--input", type=_volume_arg, metavar="CxHxW", default=None,
                   help="input volume (default: a zoo model's designed input, a spec's INPUT)")


def _input_option(args):
    return getattr(args, "input", None)


def _argument(convert, accept, expected: str):
    """An argparse type: ``convert(text)``, then ``accept(value)``, else "expected ...".

    NaN fails every ``accept`` written as a comparison that holds, so it is refused too."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    return parse


_positive_int = _argument(int, lambda v: v >= 1, "a positive integer")
# counts of passes: bounded, so that a typo is an error rather than a run that never ends
_passes = _argument(int, lambda v: 1 <= v <= 100_000, "a count from 1 to 100,000")
_warmup = _argument(int, lambda v: 0 <= v <= 100_000, "a count from 0 to 100,000")
_threads = _argument(int, lambda v: 1 <= v <= MAX_THREADS,
                     f"a thread count from 1 to {MAX_THREADS:,}")
_fraction = _argument(float, lambda v: 0.0 <= v < 1.0, "a fraction in [0, 1)")
_non_negative_float = _argument(float, lambda v: v >= 0, "a number >= 0")
_positive_float = _argument(float, lambda v: 0 < v < float("inf"), "a number > 0")
_count = _argument(int, lambda v: v >= 0, "a count >= 0 or a fraction in [0, 1)")
_every = _argument(int, lambda v: 0 <= v <= 10**9, "a number of iterations from 0 (never) to "
                   "10^9")


def _workers_arg(text):
    from .distributed.launch import MAX_WORKERS

    value = _positive_int(text)
    if value > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"at most {MAX_WORKERS} ranks on one machine, got "
                                         f"{value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") \
            from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _size(text):
    from .budget import parse_size

    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _count_or_fraction(text):
    """A count (an int >= 0) or a fraction in [0, 1)."""
    try:
        int(text)
    except ValueError:
        return _fraction(text)
    return _count(text)


def build_parser() -> argparse.ArgumentParser:
    from .data import DEFAULT_SOURCE, FITS, source_names
    from .models import DATA_DEFAULTS, MODELS
    from .optim import OPTIMIZERS

    parser = argparse.ArgumentParser(
        prog="cnnkit",
        description="Convolutional networks from first principles in NumPy.",
        epilog="Run `cnnkit COMMAND --help` for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.commands = sub.choices     # name -> parser, filled in below
    models = ["default", *MODELS]
    sources = ", ".join(source_names())
    defaults = ", ".join(f"{name} for {_volume(shape)}" for shape, name in DATA_DEFAULTS.items())

    p = sub.add_parser(
        "train",
        help="train a net on a data source (default: the shipped MNIST), print test accuracy",
        description="Train a net on a data source: " + sources + ". Writes "
        "OUT/NAME/checkpoint.npz (every epoch, for --resume), "
        "model.npz (best validation weights), history.json and "
        "curves.png, then prints the test accuracy.",
    )
    p.add_argument("--data", default=DEFAULT_SOURCE, metavar="SOURCE",
                   help="the images: " + sources + " (default: %(default)s)")
    p.add_argument(
        "--model",
        default="default",
        metavar="MODEL",
        help="a zoo name (" + ", ".join(models) + ") or a spec such as "
        '"CONV5-6 -> RELU -> POOL2 -> FC-10" (default: the data\'s: ' + defaults + ")",
    )
    p.add_argument("--input", type=_volume_arg, metavar="CxHxW", default=None,
                   help="the net's input volume; a folder's images are decoded to it (default: "
                   "a spec's INPUT, a zoo model's designed size, or the images' own)")
    p.add_argument("--fit", choices=FITS, default="auto",
                   help="how images of another size go into the net: centre them in a zero "
                   "field or resize them; auto centres when the margin is at most a quarter of "
                   "the image (28x28 digits in 32x32) and resizes otherwise (default: "
                   "%(default)s)")
    p.add_argument("--test-size", type=_fraction, default=0.2, metavar="FRACTION",
                   help="for a source without a test split of its own: the part of each class "
                   "held out to test on, seeded by --seed (default: %(default)s)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip (and count) images that cannot be decoded instead of stopping")
    p.add_argument("--epochs", type=_passes, default=5, help="epochs (default: %(default)s)")
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=64,
        help="mini-batch size (default: %(default)s)",
    )
    p.add_argument(
        "--optimizer", choices=OPTIMIZERS, default="adam", help="update rule (default: %(default)s)"
    )
    p.add_argument(
        "--lr",
        type=_non_negative_float,
        default=None,
        help="learning rate (default: "
        + ", ".join(f"{k} {choice.lr:g}" for k, choice in OPTIMIZERS.items())
        + ")",
    )
    p.add_argument(
        "--momentum",
        type=_non_negative_float,
        default=0.9,
        help="for momentum/nesterov (default: %(default)s)",
    )
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="cosine",
        help="learning-rate schedule per epoch (default: %(default)s)",
    )
    p.add_argument(
        "--step-size",
        type=_positive_int,
        default=2,
        help="epochs per step of the step schedule (default: %(default)s)",
    )
    p.add_argument(
        "--gamma",
        type=_non_negative_float,
        default=0.5,
        help="decay factor of the step/exp schedules (default: %(default)s)",
    )
    p.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        default=0.0,
        help="L2 strength on the weights (default: %(default)s)",
    )
    p.add_argument(
        "--loss", choices=("softmax", "svm"), default="softmax", help="loss (default: %(default)s)"
    )
    p.add_argument(
        "--augment",
        default="auto",
        metavar="LIST",
        help="training-time augmentation, a comma-separated list: crop (random shifts: zero "
        "padding of 1/8 of the side, 4 for 32x32, then a crop of the original size), crop:P "
        "(padding P), flip (horizontal mirror; not for digits), none (default: the data "
        "source's own, printed when training starts)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds initialisation, split and shuffling (default: %(default)s)",
    )
    p.add_argument(
        "--val-size",
        type=_count_or_fraction,
        default=None,
        help="training images held out for validation, a count or a fraction (default: a "
        "tenth, at most 5000)",
    )
    p.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        help="use only the first N training images and the first N test images (quick runs)",
    )
    add_folder_options(p, "runs", "run folder", "MODEL-DATE-TIME", "a run")
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--resume", metavar="CKPT", help="continue the run saved in CKPT (its folder and settings)"
    )
    start.add_argument("--weights", metavar="FILE",
                       help="start from the weights in FILE: a checkpoint, or a PyTorch .pt or "
                       ".safetensors state dict of the same net")
    p.add_argument("--layer-stats", type=_every, default=50, metavar="N",
                   help="every N iterations record each layer's activation percentiles, "
                   "gradient norms and update/weight ratio to layer_stats.json and .png; 0: "
                   "none (default: %(default)s)")
    p.add_argument("--report", action="store_true",
                   help="at the end, write report.html in the run folder (see `cnnkit report`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    parallel_options = p.add_argument_group(
        "data-parallel training (MPI)",
        "Under `mpiexec -n P cnnkit train ...` each of the P ranks trains on batch/P images of "
        "every batch and one allreduce per step sums the gradients; the weights are those of "
        "one process training on the same batches. Needs `pip install \"cnnkit[mpi]\"`.")
    parallel_options.add_argument(
        "--workers", type=_workers_arg, default=None, metavar="P",
        help="start P ranks on this machine (runs mpiexec -n P for you); each gets "
        "cores/P threads unless --threads says")
    parallel_options.add_argument(
        "--sync-bn", action="store_true",
        help="batch norm normalises with the statistics of the whole batch, summed over the "
        "ranks (default: each rank's own shard, as PyTorch's DistributedDataParallel)")
    parallel_options.add_argument(
        "--timeout", type=_positive_float, default=None, metavar="SECONDS",
        help="how long a rank waits for the others at a step before it names the ranks "
        "missing and stops the job (default: 600)")
    _add_common_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="accuracy, per-class accuracy and confusion matrix",
        description="Evaluate a checkpoint on the data it was trained on (its test split) or on "
        "--data, preprocessed as in training.",
    )
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--data", metavar="SOURCE",
                   help="the images: " + sources + ", or FILE.npz (default: the checkpoint's)")
    p.add_argument(
        "--split",
        choices=("test", "train", "all"),
        default=None,
        help="which images of the source (default: test, or all when the source has no test "
        "split)",
    )
    p.add_argument("--skip-bad", action="store_true",
                   help="skip images that cannot be decoded instead of stopping")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while decoding")
    _add_common_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="top-k classes of image files (PNG, JPEG, BMP, GIF, WebP, TIFF)",
        description="Classify images with a checkpoint: each is decoded to the channels and "
        "size of the training images, then fitted and normalised as in training; prints the "
        "top-k class names with their probabilities.",
    )
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--top-k", type=_positive_int, default=3, help="(default: %(default)s)")
    p.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help="invert grey levels; auto inverts light-background images for "
        "MNIST-style nets (default: %(default)s)",
    )
    _add_common_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "gradcheck",
        help="whole-model numerical gradient check in float64",
        description="Check every parameter's backprop gradient against centred "
        "differences, in float64, on a random batch.",
    )
    p.add_argument(
        "--model", default="convnet-check", metavar="MODEL",
        help="a zoo name or a spec (default: %(default)s)"
    )
    _add_input_option(p)
    p.add_argument(
        "--loss", choices=("softmax", "svm"), default="softmax", help="(default: %(default)s)"
    )
    p.add_argument(
        "--batch", type=_positive_int, default=4, help="batch size (default: %(default)s)"
    )
    p.add_argument(
        "--reg", type=_non_negative_float, default=0.0, help="L2 strength (default: %(default)s)"
    )
    p.add_argument(
        "--num-checks",
        type=_positive_int,
        default=None,
        help="random entries per parameter (default: all, or 20 for nets over 5,000 parameters)",
    )
    p.add_argument(
        "--eval", action="store_true", help="check in eval mode (running statistics, no dropout)"
    )
    p.add_argument("--tol", type=_positive_float, default=1e-6,
                   help="pass threshold (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    _add_common_options(p)
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser(
        "summary",
        help="per-layer volumes, memory, parameters and FLOPs (the notes' VGG-16 table)",
        description="A row per layer with its output volume, activations, parameters and "
        "multiply-adds, the totals, and the notes' estimate of the memory a training step "
        "needs: activations and their gradients, parameters with their gradients and the "
        "optimizer's caches, the largest im2col buffer. Nothing is run.",
    )
    _add_model_argument(p, models, checkpoint=True)
    p.add_argument(
        "--batch", type=_positive_int, default=1,
        help="batch size of the training estimate (default: %(default)s)"
    )
    p.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="(default: %(default)s)"
    )
    p.add_argument(
        "--optimizer", choices=OPTIMIZERS, default="adam",
        help="whose caches the training estimate counts (default: %(default)s)"
    )
    p.add_argument("--notes", action="store_true",
                   help="print the table in the notes' format (INPUT: [224x224x3] memory: ...)")
    p.add_argument("--json", metavar="PATH", help="also write the summary as JSON to PATH")
    _add_common_options(p)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser(
        "convert",
        help="turn a net's FC layers into convolutions, to slide it over larger images",
        description="FC -> conv conversion (the notes' 224 -> 384 example): the first FC over a "
        "[C'xH'xW'] volume becomes an H'xW' convolution, the later ones 1x1 convolutions, so the "
        "net gives a map of class scores over a larger image in one forward pass.",
    )
    _add_model_argument(p, models, checkpoint=True)
    p.add_argument("--image", type=_volume_arg, metavar="CxHxW",
                   help="also give the score map's size on an image of this volume")
    p.add_argument("--output", "-o", metavar="PATH",
                   help="save the converted net (weights included) as a checkpoint")
    _add_common_options(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "export",
        help="write a net as ONNX (for onnxruntime and other servers) or its weights as "
        "safetensors",
        description="Write a checkpoint's net (or a zoo model or spec, with fresh weights) as an "
        "ONNX model of its eval forward, input \"input\" and output \"output\", checked by "
        "onnx.checker; or, for -o *.safetensors, its weights under PyTorch's names. ONNX needs "
        "the onnx package (pip install \"cnnkit[onnx]\").",
    )
    _add_model_argument(p, models, checkpoint=True)
    p.add_argument("--output", "-o", metavar="PATH", required=True,
                   help="the file to write: *.onnx or *.safetensors")
    p.add_argument("--batch", type=_batch_arg, default="dynamic", metavar="dynamic|N",
                   help="the batch axis: any size (default) or a fixed N")
    p.add_argument("--opset", type=_argument(int, lambda v: v >= 1, "an opset number"),
                   default=_DEFAULT_OPSET, help="ONNX opset (default: %(default)s)")
    p.add_argument("--external-data", action="store_true",
                   help="keep the weights in a file beside the .onnx (ONNX's external data; "
                   "always so above 2 GiB)")
    p.add_argument("--num-classes", type=_positive_int, default=None,
                   help="a zoo model's number of classes (default: its own)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of a zoo model's or spec's fresh weights (default: %(default)s)")
    _add_common_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import",
        help="load a PyTorch .pt/.pth or a .safetensors file into a net and save a checkpoint",
        description="Build MODEL (a zoo name or a spec) without drawing weights, fill it from "
        "FILE (a PyTorch state dict saved with torch.save, read without torch and without "
        "unpickling anything but tensors; a .safetensors file; or another checkpoint), checking "
        "every name and shape, and save it as a cnnkit checkpoint. Missing, unexpected and "
        "mismatched arrays are listed, and refused unless --partial.",
    )
    p.add_argument("file", metavar="FILE", help="the weights: .pt, .pth, .bin or .safetensors")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help=_MODEL_HELP + ", ".join(models))
    _add_input_option(p)
    p.add_argument("--output", "-o", metavar="PATH", required=True,
                   help="the checkpoint to write (.npz)")
    p.add_argument("--num-classes", type=_positive_int, default=None,
                   help="a zoo model's number of classes (default: its own)")
    p.add_argument("--by", choices=("auto", "name", "order"), default="auto",
                   help="pair the file's arrays with the net's by name (PyTorch's names) or by "
                   "position (a net whose modules are named differently, such as torchvision's "
                   "resnet18); auto (the default): by name when any name is shared, else by "
                   "position when every pair agrees in shape")
    p.add_argument("--partial", action="store_true",
                   help="load what matches and keep fresh weights for the rest")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the fresh weights with --partial (default: %(default)s)")
    p.add_argument("--mean", type=_floats, default=None, metavar="M1,M2,...",
                   help="per-channel mean the net's training normalised with (pixels in [0, 1]),"
                   " recorded for predict and evaluate (default: 0)")
    p.add_argument("--std", type=_floats, default=None, metavar="S1,S2,...",
                   help="per-channel standard deviation, likewise (default: 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    _add_common_options(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "time",
        help="per-layer forward/backward times of a model (Caffe's `caffe time`)",
        description="Time each layer's forward and backward pass (median over the passes) on a "
        "random batch, then the totals: forward, backward, Adam update, training step.",
    )
    _add_model_argument(p, models)
    p.add_argument(
        "--batch", type=_positive_int, default=64, help="batch size (default: %(default)s)"
    )
    p.add_argument(
        "--iterations", type=_passes, default=50, help="timed passes (default: %(default)s)"
    )
    p.add_argument(
        "--warmup", type=_warmup, default=1, help="untimed passes first (default: %(default)s)"
    )
    p.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="(default: %(default)s)"
    )
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON to PATH")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    _add_common_options(p)
    p.set_defaults(func=cmd_time)

    from .experiments import EXPERIMENTS

    p = sub.add_parser(
        "experiment",
        help="run one of the notes' experiments: " + ", ".join(EXPERIMENTS),
        description="Run one of the notes' experiments and write its figures (PNG) and numbers "
        "(JSON) to OUT/NAME, then print a short table. "
        + " ".join(f"{name}: {e.summary}." for name, e in EXPERIMENTS.items()),
    )
    p.add_argument("experiment", choices=list(EXPERIMENTS), metavar="NAME",
                   help="one of: " + ", ".join(EXPERIMENTS))
    p.add_argument("--full", action="store_true",
                   help="the published scale (longer) instead of the few-minute default")
    add_folder_options(p, "experiments", "results folder", "the experiment's", "results")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common_options(p)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser(
        "report",
        help="write RUN_DIR/report.html: one self-contained page on a training run",
        description="Write one self-contained HTML page (images inlined, nothing fetched) on a "
        "run folder of `cnnkit train`: the settings, the model summary, the curves, the "
        "confusion matrix and per-class accuracy, misclassified test images, the first layer's "
        "filters, activation maps and a saliency map of a test image, and per-layer times.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `cnnkit train`")
    p.add_argument("--output", "-o", metavar="PATH",
                   help="where to write the page (default: RUN_DIR/report.html)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common_options(p)
    p.set_defaults(func=cmd_report)
    from .search import add_search_parser    # search
    add_search_parser(sub)                   # search
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    from .distributed.comm import job_rank, job_size

    if job_size() > 1 and job_rank() != 0:
        # every rank of an mpiexec job parses the same words: rank 0 alone says what is wrong
        with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet), \
                contextlib.redirect_stdout(quiet):
            args = parser.parse_args(argv)
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.error(f"choose a command: {', '.join(parser.commands)} (cnnkit COMMAND --help "
                     f"for its options)")
    args.epochs_given = any(a == "--epochs" or a.startswith("--epochs=") for a in argv)
    from .budget import set_memory_budget
    from .io import CheckpointError

    from . import parallel

    debug = args.debug or bool(os.environ.get("CNNKIT_DEBUG"))
    threads_before = None
    set_memory_budget(args.memory_budget)
    try:
        # --threads, else the default, which reads CNNKIT_NUM_THREADS (and says so if it is not
        # a count); restored on return, for callers of main() such as the tests
        threads_before = parallel.get_num_threads()
        if args.threads is not None:
            parallel.set_num_threads(args.threads)
        if getattr(args, "workers", None) and args.workers > 1:
            return _launch_workers(argv, args)
        with parallel.blas_single_thread():    # cnnkit's threads split the work, not BLAS's
            return args.func(args)
    except KeyboardInterrupt as err:
        return _error_exit(args, "interrupted", EXIT_INTERRUPTED, err, prefix="")
    except BrokenPipeError:
        # the reader left (`cnnkit evaluate CKPT | head`): stop quietly, as a shell tool would;
        # stdout goes to /dev/null so that Python's flush at exit raises nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (CLIError, CheckpointError, ValueError, TypeError, RuntimeError, OSError) as err:
        if debug:
            raise
        from .models.spec import SpecError

        # A spec error's later lines echo the spec with a caret under the offending token.
        lines = str(err).splitlines() or [type(err).__name__]
        message = "\n".join(lines) if isinstance(err, SpecError) else lines[0]
        return _error_exit(args, message, EXIT_ERROR, err)
    except MemoryError as err:
        if debug:
            raise
        return _error_exit(args, f"out of memory ({err or 'an allocation failed'}); a smaller "
                           f"--batch-size or input would need less", EXIT_ERROR, err)
    except Exception as err:   # the boundary: whatever escaped is still one line, not a traceback
        if debug:
            raise
        first = (str(err).splitlines() or [""])[0]
        return _error_exit(args, f"internal error, {type(err).__name__}: {first} (a bug in "
                           f"cnnkit; --debug shows where)", EXIT_ERROR, err)
    finally:
        if threads_before is not None:
            parallel.set_num_threads(threads_before)
        set_memory_budget(None)


def _launch_workers(argv, args) -> int:
    """``cnnkit train --workers P``: check what can be checked here, then start the P ranks."""
    from .distributed import job_size
    from .distributed.launch import launch

    if job_size() > 1:
        raise CLIError("--workers starts its own MPI ranks; under mpiexec leave it out")
    if not args.resume and args.batch_size % args.workers:
        raise CLIError(f"--batch-size {args.batch_size} does not split over --workers "
                       f"{args.workers} (each rank trains batch/ranks images); give a batch "
                       f"that is a multiple of {args.workers}")
    return launch(argv, args.workers, args.threads)


def _error_exit(args, message: str, code: int, err: BaseException, *,
                prefix: str = "error: ") -> int:
    """Print ``cnnkit COMMAND: error: MESSAGE`` and return ``code``; as one rank of several,
    print it only where it should appear once, tell the other ranks, and leave at once."""
    comm = getattr(args, "active_comm", None)
    if comm is None:
        if getattr(err, "report", True):
            print(f"cnnkit {args.command}: {prefix}{message}", file=sys.stderr)
        return code
    from .distributed import DistributedError, exit_now
    from .distributed.comm import QUIET_EXIT_DELAY
    from .train import TrainingDiverged

    # Errors every rank knows of at the same point leave no collective pending: the ranks then
    # end the ordinary way (MPI finalised, the same exit status), and mpiexec ends quietly.
    together = True
    if hasattr(err, "cnnkit_report"):                 # agreed on in a set-up step
        report = err.cnnkit_report
        if getattr(err, "cnnkit_rank", None) is not None:
            message = f"rank {err.cnnkit_rank}: {message}"
    elif isinstance(err, DistributedError):           # a peer failed, or a timeout
        report, together = err.report, getattr(err, "agreed", False)
    elif isinstance(err, (TrainingDiverged, KeyboardInterrupt)):
        report = comm.is_root                          # every rank met it at the same step
    else:                              # this rank failed: the lowest rank that did says so
        message = f"rank {comm.rank}: {message}"
        report, together = comm.fail(message), False
    if report:
        print(f"cnnkit {args.command}: {prefix}{message}", file=sys.stderr)
    if together:
        return code
    if not report:                      # the rank that reports ends the job when it has spoken
        time.sleep(QUIET_EXIT_DELAY)
    exit_now(code, comm)
    return code


if __name__ == "__main__":
    sys.exit(main())
