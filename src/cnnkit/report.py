"""One self-contained HTML page on a training run: what ``cnnkit report RUN_DIR`` and
``Run.report(path)`` write.

    >>> cnnkit.load_run("runs/lenet-bn-20261130-101500").report()     # doctest: +SKIP
    PosixPath('runs/lenet-bn-20261130-101500/report.html')

The page holds the run's settings, the model's layer table, the training curves, the confusion
matrix and per-class accuracy on the test split the run held out, misclassified test images,
the first layer's filters, the activation maps and saliency map of a test image, and per-layer
times. Every picture is a PNG inlined as a ``data:`` URI and the stylesheet is inline: the page
fetches nothing, so it can be mailed or archived as one file.

It is drawn from a :class:`cnnkit.Run`: one trained in memory by ``cnnkit.fit``, or one read
back from a run folder by ``cnnkit.load_run`` (a run still training is read from its last
checkpoint, and the page says so).
"""

from __future__ import annotations

import json
import time

import numpy as np

from ._atomic import atomic_write_text
from ._html import escape, figure, note, table
from ._html import page as html_page
from ._progress import Bar
from .data import DataError
from .inference import recorded_source
from .nn import brief
from .summary import abbreviate, format_bytes, images_within, summarize
from .timing import time_layers
from .train import predict
from .viz import (
    confusion_matrix,
    per_class_accuracy,
    plot_activations,
    plot_confusion_matrix,
    plot_filters,
    plot_history,
    plot_layer_stats,
    plot_misclassified,
    plot_saliency,
)
from .viz._images import conv_layers

__all__ = ["write_report", "report_html", "TEST_IMAGES"]

#: The most test images the page evaluates (spread evenly over the split when it holds more):
#: TEST_IMAGES, or fewer for a large net, so that their forward passes cost about TEST_MACS
#: multiply-adds (seconds in NumPy), but MIN_TEST_IMAGES at least.
TEST_IMAGES = 10_000
TEST_MACS = 10 ** 11
MIN_TEST_IMAGES = 100
# Per-layer times: a batch of TIMING_BATCH (fewer for a large net) and as many passes, up to
# 20, as fit in about TIMING_SECONDS.
TIMING_BATCH = 16
TIMING_SECONDS = 2.0


def write_report(run, output, progress: bool = True, *, allow_nonfinite: bool = False):
    """Write the page on ``run`` (a :class:`cnnkit.Run`) to ``output``, atomically; returns its
    path. ``Run.report`` calls this with the run folder's ``report.html`` by default.

    Raises
    ------
    RunFileError
        If the run's layer statistics are damaged (the message names the file).
    NonFiniteError
        If the net's weights or statistics hold NaN or infinite values, unless
        ``allow_nonfinite`` (the page then opens with a warning naming them).
    """
    return atomic_write_text(output, report_html(run, progress=progress,
                                                 allow_nonfinite=allow_nonfinite))


def report_html(run, progress: bool = False, *, allow_nonfinite: bool = False) -> str:
    """The page on ``run`` (a :class:`cnnkit.Run`), as HTML text (see :func:`write_report`)."""
    start = time.perf_counter()
    page = _Page(run, progress, allow_nonfinite)
    steps = [_settings_section, _summary_section, _curves_section, _layer_stats_section,
             _evaluation_section, _filters_section, _image_section, _timing_section]
    bar = Bar(len(steps), enabled=progress, unit="section")
    sections = []
    try:
        for step in steps:
            bar.set_description(f"report: {step.__name__.strip('_').replace('_section', '')}")
            sections.append(step(page))
            bar.update()
    finally:
        bar.close()
    return _page(page, sections, time.perf_counter() - start)


# ---------------------------------------------------------------------------- the run

class _Page:
    """What the sections read of the run: its net and metadata, history, layer statistics and
    test images, and the notes the page opens with."""

    def __init__(self, run, progress: bool = False, allow_nonfinite: bool = False):
        self.run, self.progress = run, progress
        self.model, self.preprocessing, self.classes = run.model, run.preprocessing, run.classes
        self.meta, self.settings, self.history = run.metadata, run.metadata["settings"], \
            run.history
        self.name = run.folder.resolve().name if run.folder is not None else "a run in memory"
        self.notes = list(run.notes)
        broken = run.check_net(allow_nonfinite)        # refused here unless allowed
        if broken:
            shown = "; ".join(broken[:10]) + (f"; and {len(broken) - 10} more arrays"
                                              if len(broken) > 10 else "")
            self.notes.append(f"{run.weights_file or 'The net'} holds NaN or infinite values "
                              f"({shown}): the net's scores, accuracy and pictures below are "
                              f"meaningless.")
        self._test = False

    @property
    def input_shape(self) -> tuple:
        return tuple(self.preprocessing.input_shape)

    def test_cap(self) -> int:
        """How many test images the page evaluates at most (see TEST_IMAGES)."""
        macs = summarize(self.model, self.input_shape).macs
        return int(min(TEST_IMAGES, max(MIN_TEST_IMAGES, TEST_MACS // max(macs, 1))))

    def class_names(self, k: int) -> list[str]:
        return list(self.classes) if self.classes and len(self.classes) == k \
            else [str(i) for i in range(k)]

    def data(self):
        """The run's data, or None when it could not be opened (see :meth:`test`)."""
        self.test()
        return self.run.dataset

    def test(self):
        """(split, how it was chosen) of the images to evaluate, or (None, why there are
        none). The data is opened once, on first use."""
        if self._test is not False:
            return self._test
        try:
            split, how = self.run.test_split(progress=self.progress)
        except (DataError, OSError, ValueError) as err:
            self._test = None, f"the run's data could not be opened again: {err}"
            return self._test
        cap = self.test_cap() if split is not None else 0
        if split is not None and len(split) > cap:
            picked = np.linspace(0, len(split) - 1, cap).round().astype(np.int64)
            how += (f"; {cap:,} of its {len(split):,} images, evenly spaced (the report "
                    f"evaluates {cap:,} at most for this net)")
            split = split.subset(picked)
        self._test = split, how
        return self._test


# ---------------------------------------------------------------------------- HTML pieces

_e, _figure, _table, _note = escape, figure, table, note


def _section(key: str, title: str, body: str) -> tuple[str, str, str]:
    return key, title, body


def _value(value) -> str:
    """A setting as the page shows it: text as it is, None as "none", the rest as JSON."""
    return value if isinstance(value, str) else "none" if value is None else json.dumps(value)


# ---------------------------------------------------------------------------- sections

def _settings_section(run: _Page):
    p = run.preprocessing
    facts = [("run folder", str(run.run.folder.resolve()) if run.run.folder else "none: "
              "trained in memory"),
             ("weights", run.run.weights_file or "in memory"),
             ("data source", recorded_source(run.meta) or "not recorded"),
             ("classes", ", ".join(run.classes) if run.classes else "not recorded"),
             ("images", f"{p.image_shape[0]} channel{'s' if p.image_shape[0] > 1 else ''}, "
                        f"{p.describe()}"),
             ("normalisation", "mean " + ", ".join(f"{m:.4f}" for m in p.mean) + "; std "
              + ", ".join(f"{s:.4f}" for s in p.std) + " (in units of pixel / 255)"),
             ("parameters", f"{run.model.num_parameters():,}")]
    body = "".join(_note(n) for n in run.notes)
    body += "<h3>Run</h3>" + _table(("", ""), facts, cls="kv")
    body += "<h3>Settings</h3>" + _table(
        ("setting", "value"), [(k, _value(v)) for k, v in run.settings.items()], cls="kv")
    return _section("settings", "Settings", body)


def _summary_section(run: _Page):
    s = summarize(run.model, run.input_shape)
    rows = [("input", "INPUT", "x".join(map(str, s.input_shape)), f"{s.input_activations:,}",
             "0", "0")]
    for row in s.rows:
        rows.append(("\u00a0\u00a0" * max(row.depth - 1, 0) + (row.name or "(model)"),
                     brief(row.module) if row.module is not None else row.label,
                     "x".join(map(str, row.out_shape)),
                     "in place" if row.in_place else f"{row.activations:,}",
                     f"{row.params:,}", f"{row.macs:,}" if row.counted else "?"))
    table = _table(("layer", "description", "output (CxHxW)", "activations", "params", "MACs"),
                   rows, numeric=(3, 4, 5), code=(1,), cls="layers")
    totals = (f"{s.params:,} parameters; {s.activations:,} activations per image (input "
              f"included), {format_bytes(s.forward_bytes)} forward in {s.dtype}; "
              f"{abbreviate(s.macs, 3)} MACs per image.")
    return _section("model", "Model", f"<p>{_e(run.settings.get('model', ''))}</p>{table}"
                                      f"<p>{_e(totals)}</p>")


def _curves_section(run: _Page):
    h = run.history
    if h is None:
        return _section("curves", "Training curves",
                        _note("No history yet: the run has not finished an epoch."))
    if not h.get("epoch"):
        return _section("curves", "Training curves", _note("The history holds no epoch yet."))
    rows = []
    for i, epoch in enumerate(h["epoch"]):
        rows.append((epoch, *(_at(h.get(k), i) for k in
                              ("train_loss", "train_acc", "val_loss", "val_acc", "lr",
                               "seconds"))))
    fig = plot_history(h, title=f"{run.settings.get('model', '')}")
    table = _table(("epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds"),
                   rows[-20:], numeric=range(7), cls="layers")
    more = f" (the last 20 of {len(rows)})" if len(rows) > 20 else ""
    val = h.get("val_acc") or []
    best = (f"Best validation accuracy {max(val):.4f} at epoch {h['epoch'][int(np.argmax(val))]}."
            if val else "No validation images.")
    return _section("curves", "Training curves",
                    _figure(fig, "training loss and accuracy curves") +
                    f"<p>{_e(best)}</p><h3>Per epoch{_e(more)}</h3>{table}")


def _layer_stats_section(run: _Page):
    stats = run.run.layer_stats            # a damaged file: RunFileError naming it
    if stats is None:
        return _section("layers", "Inside the layers", _note(
            "No layer statistics: the run recorded none (cnnkit train --layer-stats N records "
            "them every N iterations)."))
    if not stats.iterations:
        return _section("layers", "Inside the layers",
                        _note("The layer statistics hold no record yet."))
    rows = []
    for name, record in stats.params.items():
        if name.endswith("weight"):
            ratio, grad = record["update_ratio"][-1], record["grad_norm"][-1]
            rows.append((name, f"{grad:.3g}", f"{ratio:.2g}",
                         "about right" if 1e-4 <= ratio <= 1e-2 else
                         "low: the learning rate may be too small" if ratio < 1e-4 else
                         "high: the learning rate may be too large" if ratio > 1e-2 else "?"))
    table = _table(("weight", "||dL/dW||", "||update|| / ||W||", "against the ~1e-3 rule"),
                   rows, numeric=(1, 2), code=(0,), cls="layers")
    return _section("layers", "Inside the layers", (
        f"<p>Every {stats.every} iterations (and the first): each layer's activation "
        f"percentiles and spread, its weights' gradient norms, and the size of each update "
        f"against the weights.</p>"
        + _figure(plot_layer_stats(stats), "per-layer statistics over training")
        + f"<h3>At iteration {stats.iterations[-1]}</h3>{table}"))


def _at(values, i) -> str:
    if not values or i >= len(values):
        return ""
    v = values[i]
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _evaluation_section(run: _Page):
    split, how = run.test()
    if split is None:
        return _section("test", "Test accuracy", _note(f"Not evaluated: {how}."))
    batch = images_within(run.model, run.input_shape, most=1000)
    scores = predict(run.model, split.images, batch, run.preprocessing)
    k = scores.shape[1]
    pred = scores.argmax(axis=1)
    cm = confusion_matrix(split.labels, pred, k)
    names = run.class_names(k)
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    accuracy = float(np.mean(pred == split.labels)) if len(pred) else float("nan")
    acc = per_class_accuracy(cm)
    rows = [(names[c], "n/a" if np.isnan(acc[c]) else f"{acc[c]:.4f}", f"{cm[c, c]:,}",
             f"{cm[c].sum():,}") for c in range(k)]
    body = (f"<p>Evaluated on {_e(how)}: <strong>accuracy {accuracy:.4f}</strong> "
            f"({int(np.trace(cm)):,} of {len(pred):,} images).</p>")
    body += _figure(plot_confusion_matrix(cm, names), "confusion matrix")
    body += "<h3>Per-class accuracy</h3>" + _table(
        ("class", "accuracy", "correct", "images"), rows, numeric=(1, 2, 3), cls="layers")
    body += "<h3>Misclassified test images</h3>" + _figure(
        plot_misclassified(split.images, split.labels, pred, classes=names, probabilities=probs),
        "misclassified test images")
    return _section("test", "Test accuracy", body)


def _filters_section(run: _Page):
    if not conv_layers(run.model):
        return _section("filters", "First-layer filters",
                        _note("The net has no convolution, so no filters to show."))
    return _section("filters", "First-layer filters",
                    _figure(plot_filters(run.model), "filters of the first conv layer"))


def _image_section(run: _Page):
    split, _ = run.test()
    source = "test"
    if split is None or not len(split):
        dataset = run.data()
        if dataset is None or not len(dataset.train):
            return _section("image", "One image through the net",
                            _note("No image to show: the run's data could not be opened."))
        split, source = dataset.train, "training"
    image = split.images[0]
    names = run.class_names(run.model.output_shape(run.input_shape)[0])
    label = names[int(split.labels[0])] if int(split.labels[0]) < len(names) else "?"
    body = f"<p>The first {source} image (true class {_e(label)}).</p>"
    if conv_layers(run.model):
        body += "<h3>Activation maps</h3>" + _figure(
            plot_activations(run.model, image, preprocess=run.preprocessing),
            "activation maps of each conv layer")
    else:
        body += _note("The net has no convolution, so no activation maps.")
    body += "<h3>Saliency</h3>" + _figure(
        plot_saliency(run.model, image, classes=names, preprocess=run.preprocessing),
        "saliency map")
    return _section("image", "One image through the net", body)


def _timing_section(run: _Page):
    model = run.model.copy().train()
    batch = min(TIMING_BATCH, images_within(model, run.input_shape, most=TIMING_BATCH))
    x = np.random.default_rng(0).standard_normal((batch, *run.input_shape)).astype(np.float32)
    # one image first, so that a large net is timed on a batch that takes seconds, not minutes
    one = time_layers(model, x[:1], iterations=1, warmup=0, input_grad=False)
    batch = int(max(1, min(batch, TIMING_SECONDS * 1e3 / 4 / max(one.step_ms, 1e-3))))
    x = x[:batch]
    prof = time_layers(model, x, iterations=1, warmup=1, input_grad=False)
    passes = int(max(1, min(20, TIMING_SECONDS * 1e3 / max(prof.step_ms, 1e-3))))
    if passes > 1:
        prof = time_layers(model, x, iterations=passes, warmup=0, input_grad=False)
    rows = [(r.index, r.name, r.layer, "x".join(map(str, r.output_shape)),
             f"{r.forward_ms:.3f}", f"{r.backward_ms:.3f}") for r in prof.rows]
    rows.append(("", "total", "", "", f"{prof.forward_ms:.3f}", f"{prof.backward_ms:.3f}"))
    table = _table(("#", "name", "layer", "output (NxCxHxW)", "forward ms", "backward ms"),
                   rows, numeric=(0, 4, 5), code=(2,), cls="layers")
    return _section("timing", "Per-layer time", (
        f"<p>One training step's forward and backward (train mode, float32) on a batch of "
        f"{batch} random inputs, median of {passes} pass{'es' if passes > 1 else ''} on this "
        f"machine: {prof.step_ms:.2f} ms a step, about {batch / (prof.step_ms * 1e-3):,.0f} "
        f"images/s.</p>{table}"))


# ---------------------------------------------------------------------------- the page

def _page(run: _Page, sections, seconds: float) -> str:

    title = f"cnnkit report: {run.name}"
    nav = " ".join(f'<a href="#{key}">{_e(name)}</a>' for key, name, _ in sections)
    body = "\n".join(f'<section id="{key}"><h2>{_e(name)}</h2>\n{content}\n</section>'
                     for key, name, content in sections)
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    return html_page(title, (
            f'<p class="sub">{_e(run.settings.get("model", ""))} on '
            f'{_e(recorded_source(run.meta) or "unrecorded data")}</p>\n'
            f"<nav>{nav}</nav>\n{body}"),
        footer=f"Written by <code>cnnkit report</code> on {_e(when)} in {seconds:.1f} s.")
