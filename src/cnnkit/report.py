"""One self-contained HTML page on a training run: what ``cnnkit report RUN_DIR`` and
``Run.report(path)`` write.

    >>> cnnkit.load_run("runs/lenet-bn-20261130-101500").report()     # doctest: +SKIP
    PosixPath('runs/lenet-bn-20261130-101500/report.html')

The page leads with the answer and then goes from what a user reads first to what they look
up when something is wrong; its sections, in this order (:data:`SECTIONS`):

``headline``    the test accuracy, the best epoch and its validation accuracy, the time
                trained, a thumbnail of the curves, and the data and model in one line
``curves``      the training curves and a table per epoch
``evaluation``  the confusion matrix, per-class accuracy and misclassified test images
``settings``    every setting of the run once, and what the run resolved them to
``model``       the model's layer table
``layers``      the layer statistics over training, and a verdict on each weight's updates
                (see :func:`judge_updates`)
``filters``     the first layer's filters
``maps``        the activation maps and saliency map of a test image
``timing``      per-layer times measured on the spot

``sections=`` (``cnnkit report --sections``) leaves parts out (:func:`select_sections`). Every
picture is a PNG inlined as a ``data:`` URI and the stylesheet is inline: the page fetches
nothing, so it can be mailed or archived as one file.

It is drawn from a :class:`cnnkit.Run`: one trained in memory by ``cnnkit.fit``, or one read
back from a run folder by ``cnnkit.load_run`` (a run still training is read from its last
checkpoint, and the page says so).
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass

import numpy as np

from ._atomic import atomic_write_text
from ._html import details as _details
from ._html import duration
from ._html import escape as _e
from ._html import figure as _figure
from ._html import image as _image
from ._html import note as _note
from ._html import page as _html_page
from ._html import section as _section
from ._html import table as _table
from ._progress import Bar
from .data import DataError
from .errors import UsageError
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
from .viz._figure import new_figure
from .viz._images import conv_layers
from .viz.layers import RULE_OF_THUMB

__all__ = ["write_report", "report_html", "select_sections", "SECTIONS", "judge_updates",
           "too_few_records", "UpdateVerdict", "TEST_IMAGES", "MIN_RECORDS", "MIN_LATE_RECORDS",
           "RATIO_BAND", "GROWTH"]

#: The page's sections, in the page's order: name -> heading.
SECTIONS = {
    "headline": "At a glance",
    "curves": "Training curves",
    "evaluation": "Test evaluation",
    "settings": "Settings",
    "model": "Model",
    "layers": "Inside the layers",
    "filters": "First-layer filters",
    "maps": "One image through the net",
    "timing": "Per-layer time",
}

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
# A table of more rows than LONG_TABLE is folded, one click away; a net of more conv layers
# than FEW_CONVS shows MANY_CONVS_CHANNELS channels of each (one row) instead of 16 (two).
LONG_TABLE = 30
FEW_CONVS = 8
MANY_CONVS_CHANNELS = 8

#: The verdict on a weight's updates needs MIN_RECORDS records of the layer statistics, of
#: which MIN_LATE_RECORDS in the second half of the run's iterations (see judge_updates).
MIN_RECORDS = 5
#: See MIN_RECORDS.
MIN_LATE_RECORDS = 3
#: The update/weight ratios judged about right: a factor of ten either side of the course's
#: 1e-3 rule of thumb.
RATIO_BAND = (RULE_OF_THUMB / 10, RULE_OF_THUMB * 10)
#: A weight whose norm grew more than GROWTH times from the first record to the last diverged.
GROWTH = 10.0


def write_report(run, output, progress: bool = True, *, allow_nonfinite: bool = False,
                 sections=None):
    """Write the page on ``run`` (a :class:`cnnkit.Run`) to ``output``, atomically; returns its
    path. ``Run.report`` calls this with the run folder's ``report.html`` by default.
    ``sections``: the parts to write (see :func:`select_sections`; None: all).

    Raises
    ------
    UsageError
        If ``sections`` names no section, or one that does not exist (the message names the
        closest).
    RunFileError
        If the run's layer statistics are damaged (the message names the file).
    NonFiniteError
        If the net's weights or statistics hold NaN or infinite values, unless
        ``allow_nonfinite`` (the page then opens with a warning naming them).
    """
    return atomic_write_text(output, report_html(run, progress=progress,
                                                 allow_nonfinite=allow_nonfinite,
                                                 sections=sections))


def report_html(run, progress: bool = False, *, allow_nonfinite: bool = False,
                sections=None) -> str:
    """The page on ``run`` (a :class:`cnnkit.Run`), as HTML text (see :func:`write_report`)."""
    keys = select_sections(sections)            # bad names are refused before any work
    start = time.perf_counter()
    page = _Page(run, progress, allow_nonfinite)
    # the headline is built last (it reuses what the other sections computed) and shown first
    order = [k for k in keys if k != "headline"] + [k for k in keys if k == "headline"]
    bar = Bar(len(order), enabled=progress, unit="section")
    built = {}
    try:
        for key in order:
            bar.set_description(f"report: {key}")
            built[key] = _BUILDERS[key](page)
            bar.update()
    finally:
        bar.close()
    return _page(page, [(k, built[k]) for k in keys], time.perf_counter() - start)


def select_sections(spec=None) -> tuple[str, ...]:
    """The sections a ``--sections`` list keeps, in the page's order.

    ``spec`` is a comma-separated text (or a list of names): names keep those sections only
    (``"headline,curves,evaluation"``); a list that starts with ``-name`` starts from every
    section and leaves the ``-name`` ones out (``"-timing,-maps"``); ``all`` stands for every
    section (``"all,-timing"``). The names are applied left to right; the page keeps its own
    order whatever the list's. None or "all": every section.

    Raises
    ------
    UsageError
        For a name that is not a section (naming the closest), an empty name, or a list that
        leaves no section.
    """
    if spec is None:
        return tuple(SECTIONS)
    if not isinstance(spec, (str, list, tuple)):
        raise UsageError(f"sections= takes a comma-separated text or a list of names; got "
                         f"{type(spec).__name__}")
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [str(item).strip() for item in items]
    if not names or any(not n or n == "-" for n in names):
        raise UsageError(f"--sections {_quoted(spec)}: an empty name; give a comma-separated "
                         f"list of: {', '.join(SECTIONS)} (or -name to leave one out)")
    kept = set(SECTIONS) if names[0].startswith("-") else set()
    for name in names:
        drop, key = name.startswith("-"), name.lstrip("-").lower()
        if key == "all":
            chosen = set(SECTIONS)
        elif key in SECTIONS:
            chosen = {key}
        else:
            close = difflib.get_close_matches(key, [*SECTIONS, "all"], n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(f"--sections: no section {_quoted(key)}; {hint}the sections: "
                             f"{', '.join(SECTIONS)}")
        kept = kept - chosen if drop else kept | chosen
    if not kept:
        raise UsageError(f"--sections {_quoted(spec)} leaves no section to write")
    return tuple(k for k in SECTIONS if k in kept)


def _quoted(spec, longest: int = 60) -> str:
    """A --sections value (or one of its names) as a message quotes it, cut to ``longest``."""
    text = spec if isinstance(spec, str) else ",".join(map(str, spec))
    return repr(text if len(text) <= longest else text[:longest] + "...")


# ---------------------------------------------------------------------------- the verdict

@dataclass(frozen=True)
class UpdateVerdict:
    """What :func:`judge_updates` says of one weight.

    Attributes
    ----------
    weight : the parameter's name (e.g. "4.weight")
    grad_norm : the median ``||dL/dW||`` over the judged records
    ratio : the median ``||update|| / ||W||`` over the judged records
    growth : ``||W||`` at the last record over ``||W||`` at the first (NaN when the first is 0)
    verdict : "about right", "low", "high", "diverged", "stalled" or "non-finite"
    advice : the verdict as the page writes it
    """

    weight: str
    grad_norm: float
    ratio: float
    growth: float
    verdict: str
    advice: str

    @property
    def flagged(self) -> bool:
        """Whether the verdict asks for a look (anything but "about right")."""
        return self.verdict != "about right"


def too_few_records(stats, iterations: int | None = None) -> str | None:
    """Why the layer statistics ``stats`` (a :class:`cnnkit.monitor.LayerStats`) are too few for
    a verdict on the run's updates, or None when they are enough: at least :data:`MIN_RECORDS`
    records, :data:`MIN_LATE_RECORDS` of them in the second half of the run's ``iterations``
    (by default, up to the last record)."""
    recorded = list(stats.iterations)
    total = max(int(iterations or 0), recorded[-1] if recorded else 0)
    late = sum(1 for i in recorded if i > total / 2)
    if len(recorded) >= MIN_RECORDS and late >= MIN_LATE_RECORDS:
        return None
    at = ", ".join(map(str, recorded[:6])) + (", ..." if len(recorded) > 6 else "")
    held = (f"{len(recorded)} record{'s' if len(recorded) != 1 else ''} (iteration"
            f"{'s' if len(recorded) != 1 else ''} {at})" if recorded else "no record")
    every = max(1, total // 20)
    return (f"Too few records for a verdict on the updates: the layer statistics hold {held} "
            f"of this run's {total:,} iterations, {late} in its second half; a verdict needs "
            f"at least {MIN_RECORDS} records, {MIN_LATE_RECORDS} of them in the second half. "
            f"Train with --layer-stats {every} to record about 20 times over a run this long.")


def judge_updates(stats, iterations: int | None = None) -> list[UpdateVerdict]:
    """A verdict on each weight's updates (biases and batch norm's beta left out) from the
    layer statistics ``stats`` of a run of ``iterations`` mini-batches.

    The rule, on the records in the second half of the run (iteration > iterations / 2), so
    that the first steps (Adam's are about ``lr`` per value whatever the gradient, and a
    warm-up's are small) do not decide it, and on medians, so that one noisy batch does not:

    - "non-finite": the weight's norm is NaN or infinite at a judged record;
    - "diverged": ``||W||`` grew more than :data:`GROWTH` times from the first record to the
      last (the learning rate is too large: the weights run away);
    - "stalled": ``||dL/dW||`` is 0 (or was not recorded) at every judged record (the weight
      no longer learns: dead units, or a run that diverged earlier);
    - "high" / "low": the median ``||update|| / ||W||`` is above / below :data:`RATIO_BAND`,
      a factor of ten either side of the 1e-3 rule of thumb (the learning rate may be too
      large / too small);
    - "about right" otherwise.

    Raises
    ------
    UsageError
        If the records are too few (:func:`too_few_records` says why).
    """
    reason = too_few_records(stats, iterations)
    if reason is not None:
        raise UsageError(reason)
    recorded = np.asarray(stats.iterations)
    total = max(int(iterations or 0), int(recorded[-1]))
    late = recorded > total / 2
    low, high = RATIO_BAND
    verdicts = []
    for name, record in stats.params.items():
        if not name.endswith("weight"):
            continue
        norms = np.asarray(record["weight_norm"], dtype=float)
        grads = np.asarray(record["grad_norm"], dtype=float)[late]
        ratios = np.asarray(record["update_ratio"], dtype=float)[late]
        # a saved record holds None (read back as NaN) where a value was not available: no
        # gradient reached the layer, or the weight was all zero (no ratio)
        grads, ratios = grads[np.isfinite(grads)], ratios[np.isfinite(ratios)]
        growth = norms[-1] / norms[0] if norms[0] > 0 else float("nan")
        grad = float(np.median(grads)) if len(grads) else float("nan")
        ratio = float(np.median(ratios)) if len(ratios) else float("nan")
        if not np.isfinite(norms[late]).all():
            verdict, advice = "non-finite", "NaN or infinite weights: the run diverged"
        elif growth > GROWTH:
            verdict, advice = "diverged", (f"grew {growth:.3g}x: the learning rate is too "
                                           f"large")
        elif not np.any(grads > 0) or not len(ratios):
            verdict, advice = "stalled", "no gradient in the second half: it no longer learns"
        elif ratio > high:
            verdict, advice = "high", "high: the learning rate may be too large"
        elif ratio < low:
            verdict, advice = "low", "low: the learning rate may be too small"
        else:
            verdict, advice = "about right", "about right"
        verdicts.append(UpdateVerdict(name, grad, ratio, float(growth), verdict, advice))
    return verdicts


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
        self._evaluated = None

    @property
    def input_shape(self) -> tuple:
        return tuple(self.preprocessing.input_shape)

    @property
    def iterations(self) -> int | None:
        """The run's iterations (mini-batches) so far, from its history (None: not recorded)."""
        done = (self.history or {}).get("iterations") or []
        return int(done[-1]) if done else None

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

    def evaluated(self) -> _Evaluated | None:
        """The net's answers on the test images (computed once), or None without them."""
        if self._evaluated is None:
            split, how = self.test()
            if split is None:
                return None
            batch = images_within(self.model, self.input_shape, most=1000)
            scores = predict(self.model, split.images, batch, self.preprocessing)
            self._evaluated = _Evaluated(split, how, scores)
        return self._evaluated


class _Evaluated:
    """The net's scores on a test split: predictions, probabilities, confusion matrix."""

    def __init__(self, split, how: str, scores):
        self.split, self.how, self.k = split, how, scores.shape[1]
        self.pred = scores.argmax(axis=1)
        probs = np.exp(scores - scores.max(axis=1, keepdims=True))
        self.probs = probs / probs.sum(axis=1, keepdims=True)
        self.cm = confusion_matrix(split.labels, self.pred, self.k)
        self.correct, self.images = int(np.trace(self.cm)), len(self.pred)
        self.accuracy = self.correct / self.images if self.images else float("nan")


def _value(value) -> str:
    """A setting as the page shows it: text as it is, None as "none", the rest as JSON."""
    return value if isinstance(value, str) else "none" if value is None else json.dumps(value)


# ---------------------------------------------------------------------------- sections

def _headline_section(run: _Page) -> str:
    """The answer first: test accuracy, best epoch, time, data and model, a curve thumbnail."""
    test = run.run.test
    if test is not None:
        right = int(round(test["accuracy"] * test["images"]))
        answer = (f'Test accuracy <strong class="answer">{test["accuracy"]:.4f}</strong> '
                  f'<span class="sub">({right:,} of {test["images"]:,} test images)</span>')
    else:
        seen = run.evaluated()
        if seen is not None:
            answer = (f'Test accuracy <strong class="answer">{seen.accuracy:.4f}</strong> '
                      f'<span class="sub">({seen.correct:,} of {seen.images:,} images, '
                      f'measured by this page: the run recorded no test result)</span>')
        else:
            answer = f"No test accuracy: {_e(run.test()[1])}."
    facts = [("best epoch", _best_text(run)), ("time trained", _time_text(run)),
             ("data and model", _data_line(run))]
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in facts)
    thumb = ""
    if run.history and run.history.get("epoch"):
        thumb = (f'<a class="thumb" href="#curves" title="the training curves">'
                 f'{_image(_thumbnail(run.history), "loss and accuracy per epoch")}</a>')
    body = (f'<div class="glance"><div><p class="headline">{answer}</p>'
             f'<table class="kv"><tbody>{rows}</tbody></table></div>{thumb}</div>')
    return _section("headline", SECTIONS["headline"], body)


def _best_text(run: _Page) -> str:
    h = run.history or {}
    epochs = len(h.get("epoch") or [])
    best = run.run.best or {}
    if not epochs:
        return "none yet: the run has not finished an epoch"
    if not best.get("epoch"):
        return f"no validation images; the weights are the last epoch's ({epochs} of {epochs})"
    return (f"epoch {best['epoch']} of {epochs}, validation accuracy {best['val_acc']:.4f} "
            f"(its weights are the net's)")


def _time_text(run: _Page) -> str:
    h = run.history or {}
    seconds = sum(h.get("seconds") or [])
    epochs = len(h.get("epoch") or [])
    if not epochs:
        return "no epoch finished yet"
    iterations = f", {run.iterations:,} iterations" if run.iterations else ""
    return (f"{duration(seconds)} ({epochs} epoch{'s' if epochs != 1 else ''}{iterations}, "
            f"validation included)")


def _data_line(run: _Page) -> str:
    """E.g. "lenet-bn on MNIST (2,000 train+val / 2,000 test images, 1x28x28, 10 classes)":
    the training images the run used, its validation part among them (as the run's --limit
    had them), and its test images."""
    model = run.settings.get("model", "the net")
    model = model if len(model) < 60 else "a spec net"
    p = run.preprocessing
    shape = "x".join(map(str, p.image_shape[:1])) + "x" + p.describe()
    k = run.model.output_shape(run.input_shape)[0]
    parts = []
    data = run.data()
    title = data.title if data is not None else recorded_source(run.meta) or "unrecorded data"
    if data is not None:
        limit = run.run.config.limit
        used = len(data.train) if limit is None else min(limit, len(data.train))
        parts.append(f"{used:,} train+val")
    test = run.run.test
    if test is not None:
        parts.append(f"{test['images']:,} test")
    elif data is not None and run.test()[0] is not None:
        parts.append(f"{len(run.test()[0]):,} test")
    counts = " / ".join(parts) + " images, " if parts else ""
    return f"{model} on {title} ({counts}{shape}, {k} classes)"


def _thumbnail(history: dict):
    """A small figure of the loss and the accuracy per epoch (about 400 x 180 pixels)."""
    from matplotlib.ticker import MaxNLocator

    epochs = history["epoch"]
    fig = new_figure(4.0, 1.8)
    ax_loss, ax_acc = fig.subplots(1, 2)
    marker = "o" if len(epochs) < 15 else None
    for ax, key, what in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        for split, colour in (("train", "tab:blue"), ("val", "tab:orange")):
            values = history.get(f"{split}_{key}") or []
            if values:
                ax.plot(epochs[:len(values)], values, color=colour, marker=marker,
                        markersize=3, linewidth=1.2, label=split)
        ax.set_title(what, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    ax_acc.legend(fontsize=6, loc="lower right")
    ax_acc.set_xlabel("epoch", fontsize=7)
    ax_loss.set_xlabel("epoch", fontsize=7)
    return fig


def _settings_section(run: _Page) -> str:
    """Every setting once (the data row says where the data was opened when the recorded
    source differs from the setting), then what the run resolved and measured."""
    p = run.preprocessing
    source = recorded_source(run.meta)
    rows = []
    for key, value in run.settings.items():
        shown = _value(value)
        if key == "data" and source and source != shown:
            shown += f" (opened as {source})"
        rows.append((key, shown))
    facts = [("run folder", str(run.run.folder.resolve()) if run.run.folder else "none: "
              "trained in memory"),
             ("weights", run.run.weights_file or "in memory"),
             ("classes", ", ".join(run.classes) if run.classes else "not recorded"),
             ("images", f"{p.image_shape[0]} channel{'s' if p.image_shape[0] > 1 else ''}, "
                        f"{p.describe()}"),
             ("normalisation", "mean " + ", ".join(f"{m:.4f}" for m in p.mean) + "; std "
              + ", ".join(f"{s:.4f}" for s in p.std) + " (in units of pixel / 255)")]
    third = -(-len(rows) // 3)         # three columns side by side: a third of the height
    body = '<div class="columns">' + "".join(
        _table(("setting", "value"), rows[i:i + third], cls="kv")
        for i in range(0, len(rows), third)) + "</div>"
    body += "<h3>As the run resolved them</h3>" + _table(("", ""), facts, cls="kv")
    return _section("settings", SECTIONS["settings"], body)


def _summary_section(run: _Page) -> str:
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
    return _section("model", SECTIONS["model"],
                    f"<p>{_e(totals)}</p>{_fold(table, len(rows), 'the layer table')}")


def _fold(table: str, rows: int, what: str) -> str:
    """A table as it is, or folded under "show what (N rows)" when longer than LONG_TABLE."""
    return table if rows <= LONG_TABLE else _details(f"Show {what} ({rows} rows)", table)


def _curves_section(run: _Page) -> str:
    h, title = run.history, SECTIONS["curves"]
    if h is None:
        return _section("curves", title,
                        _note("No history yet: the run has not finished an epoch."))
    if not h.get("epoch"):
        return _section("curves", title, _note("The history holds no epoch yet."))
    rows = []
    for i, epoch in enumerate(h["epoch"]):
        rows.append((epoch, *(_at(h.get(k), i) for k in
                              ("train_loss", "train_acc", "val_loss", "val_acc", "lr",
                               "seconds"))))
    fig = plot_history(h, title=f"{run.settings.get('model', '')}")
    table = _table(("epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds"),
                   rows[-20:], numeric=range(7), cls="layers")
    more = f" (the last 20 of {len(rows)})" if len(rows) > 20 else ""
    return _section("curves", title, _figure(fig, "training loss and accuracy curves")
                    + f"<h3>Per epoch{_e(more)}</h3>{table}")


def _layer_stats_section(run: _Page) -> str:
    title = SECTIONS["layers"]
    stats = run.run.layer_stats            # a damaged file: RunFileError naming it
    if stats is None:
        return _section("layers", title, _note(
            "No layer statistics: the run recorded none (cnnkit train --layer-stats N records "
            "them every N iterations)."))
    if not stats.iterations:
        return _section("layers", title, _note("The layer statistics hold no record yet."))
    recorded = stats.iterations
    when = f"at iteration {recorded[0]}" if len(recorded) == 1 else \
        f"from iteration {recorded[0]} to {recorded[-1]}"
    body = (f"<p>{len(recorded)} record{'s' if len(recorded) != 1 else ''} {when} (every "
            f"{stats.every} iterations, and the first): each layer's activation percentiles "
            f"and spread, its weights' gradient norms, and the size of each update against "
            f"the weights.</p>")
    reason = too_few_records(stats, run.iterations)
    if reason is not None:
        return _section("layers", title, body + _note(reason)
                        + _figure(plot_layer_stats(stats), "per-layer statistics"))
    verdicts = judge_updates(stats, run.iterations)
    total = max(run.iterations or 0, recorded[-1])
    late = sum(1 for i in recorded if i > total / 2)
    flagged = sum(v.flagged for v in verdicts)
    low, high = RATIO_BAND
    rows = [(v.weight, f"{v.grad_norm:.3g}", f"{v.ratio:.2g}",
             "n/a" if np.isnan(v.growth) else f"{v.growth:.3g}", v.advice) for v in verdicts]
    head = ("weight", "||dL/dW||", "||update|| / ||W||", "||W|| last / first", "verdict")
    table = _table(head, rows, numeric=(1, 2, 3), code=(0,), cls="layers")
    if len(rows) > LONG_TABLE:         # the flagged weights in view, every weight a click away
        shown = [r for r, v in zip(rows, verdicts) if v.flagged]
        table = (_table(head, shown, numeric=(1, 2, 3), code=(0,), cls="layers") if shown
                 else "") + _details(f"Show every weight ({len(rows)} rows)", table)
    return _section("layers", title, body
                    + _figure(plot_layer_stats(stats), "per-layer statistics over training")
                    + f"<h3>The updates: {flagged} of {len(verdicts)} weights flagged</h3>"
                    f"<p>Medians over the {late} records of the second half of training "
                    f"(iterations {total // 2 + 1} to {total}); an update/weight ratio from "
                    f"{low:g} to {high:g} (the 1e-3 rule of thumb, a factor of ten either "
                    f"side) is about right.</p>{table}")


def _at(values, i) -> str:
    if not values or i >= len(values):
        return ""
    v = values[i]
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _evaluation_section(run: _Page) -> str:
    title = SECTIONS["evaluation"]
    seen = run.evaluated()
    if seen is None:
        return _section("evaluation", title, _note(f"Not evaluated: {run.test()[1]}."))
    names = run.class_names(seen.k)
    acc = per_class_accuracy(seen.cm)
    cm = seen.cm
    rows = [(names[c], "n/a" if np.isnan(acc[c]) else f"{acc[c]:.4f}", f"{cm[c, c]:,}",
             f"{cm[c].sum():,}") for c in range(seen.k)]
    body = (f"<p>Evaluated on {_e(seen.how)}: <strong>accuracy {seen.accuracy:.4f}</strong> "
            f"({seen.correct:,} of {seen.images:,} images).</p>")
    body += _figure(plot_confusion_matrix(cm, names), "confusion matrix")
    body += "<h3>Per-class accuracy</h3>" + _table(
        ("class", "accuracy", "correct", "images"), rows, numeric=(1, 2, 3), cls="layers")
    body += "<h3>Misclassified test images</h3>" + _figure(
        plot_misclassified(seen.split.images, seen.split.labels, seen.pred, classes=names,
                           probabilities=seen.probs),
        "misclassified test images")
    return _section("evaluation", title, body)


def _filters_section(run: _Page) -> str:
    title = SECTIONS["filters"]
    if not conv_layers(run.model):
        return _section("filters", title,
                        _note("The net has no convolution, so no filters to show."))
    return _section("filters", title,
                    _figure(plot_filters(run.model), "filters of the first conv layer"))


def _maps_section(run: _Page) -> str:
    title = SECTIONS["maps"]
    split, _ = run.test()
    source = "test"
    if split is None or not len(split):
        dataset = run.data()
        if dataset is None or not len(dataset.train):
            return _section("maps", title,
                            _note("No image to show: the run's data could not be opened."))
        split, source = dataset.train, "training"
    image = split.images[0]
    names = run.class_names(run.model.output_shape(run.input_shape)[0])
    label = names[int(split.labels[0])] if int(split.labels[0]) < len(names) else "?"
    body = f"<p>The first {source} image (true class {_e(label)}).</p>"
    convs = len(conv_layers(run.model))
    if convs:
        channels = 16 if convs <= FEW_CONVS else MANY_CONVS_CHANNELS
        body += (f"<h3>Activation maps</h3><p>The first {channels} channels (at most) of "
                 f"each of the {convs} conv layer{'s' if convs > 1 else ''}.</p>") + _figure(
            plot_activations(run.model, image, preprocess=run.preprocessing,
                             max_channels=channels),
            "activation maps of each conv layer")
    else:
        body += _note("The net has no convolution, so no activation maps.")
    body += "<h3>Saliency</h3>" + _figure(
        plot_saliency(run.model, image, classes=names, preprocess=run.preprocessing),
        "saliency map")
    return _section("maps", title, body)


def _timing_section(run: _Page) -> str:
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
    table = _fold(table, len(rows), "the per-layer times")
    return _section("timing", SECTIONS["timing"], (
        f"<p>One training step's forward and backward (train mode, float32) on a batch of "
        f"{batch} random inputs, median of {passes} pass{'es' if passes > 1 else ''} on this "
        f"machine: {prof.step_ms:.2f} ms a step, about {batch / (prof.step_ms * 1e-3):,.0f} "
        f"images/s.</p>{table}"))


_BUILDERS = {"headline": _headline_section, "curves": _curves_section,
             "evaluation": _evaluation_section, "settings": _settings_section,
             "model": _summary_section, "layers": _layer_stats_section,
             "filters": _filters_section, "maps": _maps_section, "timing": _timing_section}


# ---------------------------------------------------------------------------- the page

_STYLE = """
.glance { display: flex; flex-wrap: wrap; gap: 1rem 1.5rem; align-items: flex-start; }
.glance > div { flex: 1 1 400px; }
.glance table.kv { margin: 0; }
p.headline { font-size: 1.25rem; margin: 0.2rem 0 0.6rem; }
strong.answer { font-size: 1.6rem; }
a.thumb { flex: 0 1 400px; }
a.thumb img { width: 100%; }
#headline h2 { margin-top: 1rem; }
.columns { display: flex; flex-wrap: wrap; gap: 0 1.5rem; align-items: flex-start; }
"""


def _page(run: _Page, sections, seconds: float) -> str:
    """The page around the built ``sections`` [(key, HTML)]: a line of links, the notes
    (whatever the sections), then the sections."""
    nav = " ".join(f'<a href="#{key}">{_e(SECTIONS[key])}</a>' for key, _ in sections)
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    body = (f"<nav>{nav}</nav>\n" + "".join(_note(n) for n in run.notes) + "\n"
            + "\n".join(html for _, html in sections))
    return _html_page(f"cnnkit report: {run.name}", body, style=_STYLE,
                      footer=f"Written by <code>cnnkit report</code> on {_e(when)} in "
                             f"{seconds:.1f} s.")
