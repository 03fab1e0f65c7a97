"""User text in figures is drawn as written: class, layer, file and folder names holding ``$``,
``\\``, ``_``, ``^``, unicode or hundreds of characters render in every cnnkit figure, and the
figure shows them literally (matplotlib's math parser never sees them).

Each figure function is drawn with each hostile text where user text enters it, rendered to PNG
in memory with warnings as errors (a collapsed layout warns), and its Text objects searched for
the text.
"""

import html
import io
import re
import warnings

import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image

from cnnkit import nn, viz
from cnnkit.cli import main
from cnnkit.cli.main import _message
from cnnkit.viz._figure import CUT, LONGEST_LINE, LONGEST_NAME, MOST_LINES, shorten

LONG = "head_" + "x" * 290 + "_tail$"          # a 300-character name, ends distinct
# the first three in the quick suite: a parse error, math drawn silently, a long name
HOSTILE = [r"$\frac{$", r"cost $5 and $6 a_b^c \alpha", LONG,
           *(pytest.param(t, marks=pytest.mark.slow) for t in
             (r"$x^$", "\\", "_", "Ωμé → ∑ ü", "two\nlines"))]


def small_net(rng, channels=1, classes=3):
    return nn.Sequential(nn.Conv2d(channels, 3, 3, padding=1, rng=rng), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 5 * 7, classes, rng=rng))


def layer_stats(names: list[str], types: str = "Conv2d") -> dict:
    """LayerStats records (as ``to_dict`` writes them) for layers called ``names``."""
    rng = np.random.default_rng(0)
    series = {k: list(rng.random(3)) for k in ("act_mean", "act_std", "act_p15", "act_p50",
                                                "act_p85", "out_grad_norm")}
    return {"every": 5, "iterations": [1, 5, 10],
            "layers": {n: {"type": types, **series} for n in names},
            "params": {f"{n}.weight": {k: list(rng.random(3) + 0.1) for k in
                                       ("weight_norm", "grad_norm", "update_ratio")}
                       for n in names}}


class Named(nn.Module):
    """A net whose one convolution is a child called ``name``."""

    def __init__(self, name, rng):
        super().__init__()
        self.name = name
        setattr(self, name, nn.Conv2d(1, 2, 3, rng=rng))

    def forward(self, x):
        return getattr(self, self.name).forward(x)


def _history(text):
    history = {"epoch": [1, 2], "train_loss": [0.9, 0.5], "val_loss": [1.0, 0.7],
               "train_acc": [0.4, 0.7], "val_acc": [0.3, 0.6], "batch_loss": [1.2, 0.9, 0.6, 0.4],
               "iterations": [2, 4]}
    return viz.plot_history(history, title=text)


def _confusion(text):
    return viz.plot_confusion_matrix(np.array([[3, 1, 0], [0, 2, 1], [1, 0, 4]]),
                                     [text, "b", "c"])


def _misclassified(text):
    rng = np.random.default_rng(1)
    return viz.plot_misclassified(rng.integers(0, 256, (4, 5, 7), dtype=np.uint8),
                                  [0, 1, 2, 0], [1, 0, 2, 2], classes=[text, "b", "c"],
                                  probabilities=np.full((4, 3), 1 / 3), title=None)


def _saliency(text):
    rng = np.random.default_rng(2)
    return viz.plot_saliency(small_net(rng), rng.standard_normal((1, 5, 7)),
                             classes=[text] * 3, title=text)


def _layers(text):
    return viz.plot_layer_stats(layer_stats([text, "1"], types=text), title=text)


def _deep_layers(text):        # beyond 14 layers: a colour bar's label names the first
    return viz.plot_layer_stats(layer_stats([text] + [str(i) for i in range(1, 15)]))


def _filters(text):
    return viz.plot_filters(np.random.default_rng(3).standard_normal((4, 2, 3, 2)), title=text)


def _activations(text):
    rng = np.random.default_rng(4)
    return viz.plot_activations(Named(text, rng), rng.standard_normal((1, 6, 5)), title=text)


FIGURES = {"history": _history, "confusion": _confusion, "misclassified": _misclassified,
           "saliency": _saliency, "layers": _layers, "deep-layers": _deep_layers,
           "filters": _filters, "activations": _activations}


def _texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_text()]


def _shows(fig, text: str) -> list[Text]:
    """The figure's Texts that show ``text``: itself, or for a long one its two ends either
    side of the cut."""
    if len(text) <= LONGEST_NAME:
        return [t for t in _texts(fig) if text in t.get_text()]
    return [t for t in _texts(fig) if "head_xxx" in t.get_text() and "xxx_tail$" in t.get_text()
            and CUT in t.get_text()]


@pytest.mark.parametrize("text", HOSTILE, ids=[f"text{i}" for i in range(len(HOSTILE))])
@pytest.mark.parametrize("figure", FIGURES)
def test_every_figure_draws_user_text_literally(figure, text):
    fig = FIGURES[figure](text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # a collapsed layout, a missing glyph
        png = viz.png_bytes(fig)
    assert Image.open(io.BytesIO(png)).size[0] > 300
    shown = [t for t in _shows(fig, text if "\n" not in text else "lines") if _literal(t)]
    assert shown, f"{text!r} is not drawn literally in {[t.get_text() for t in _texts(fig)]}"
    # what is still parsed as math is the axes' own numbers ("cost $5 and $6" renders as math
    # without an error: only this finds it)
    parsed = [t.get_text() for t in _texts(fig) if not _literal(t) and "$" in t.get_text()]
    assert all(re.fullmatch(r"\$\\mathdefault\{[^$]*\}\$", t) for t in parsed), parsed
    assert all(len(line) <= LONGEST_LINE for t in _texts(fig) for line in t.get_text().split("\n"))
    viz.close(fig)


def _literal(text: Text) -> bool:
    return not text.get_parse_math() and not text.get_usetex()


def test_user_tick_labels_and_panel_titles_are_cut_to_a_tick_length():
    fig = _confusion(LONG)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(ticks[0]) == LONGEST_NAME and ticks[1:] == ["b", "c"]
    viz.close(fig)
    fig = _misclassified(LONG)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert f"{shorten(LONG, LONGEST_NAME)} → b (0.33)" in titles
    viz.close(fig)


def test_a_log_axis_keeps_its_math_tick_labels():
    """Tick labels the axis formats itself are not user text: a log axis writes 10^-1 in
    mathtext, and it must stay math (drawn, not shown as "$\\mathdefault{...}$")."""
    fig = _history("run")
    viz.png_bytes(fig)
    labels = [t for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert labels and all(t.get_text().startswith("$") and t.get_parse_math() for t in labels)
    assert not fig.axes[0].title.get_parse_math()
    viz.close(fig)


def test_usetex_is_off_for_cnnkit_text_even_when_the_user_turns_it_on():
    import matplotlib

    with matplotlib.rc_context({"text.usetex": True}):
        fig = _confusion(r"$\frac{$")
        texts = [t for t in fig.findobj(Text) if r"\frac" in t.get_text()]
        assert len(texts) >= 2 and not any(t.get_usetex() for t in texts)
        viz.close(fig)


@pytest.mark.parametrize("text, expected", [
    ("short", "short"),
    ("a" * LONGEST_LINE, "a" * LONGEST_LINE),
    ("a" * 10 + "b" * 200 + "c" * 10, "a" * 10 + "b" * 65 + CUT + "b" * 64 + "c" * 10),
    ("\n".join("line"), "\n".join("line")),
    ("\n".join(map(str, range(9))), "0\n1\n2\n3\n4\n" + CUT),
    (7, "7"),
])
def test_shorten_cuts_long_lines_in_the_middle_and_many_lines_at_the_end(text, expected):
    got = shorten(text)
    assert got == expected
    assert got.count("\n") < MOST_LINES and shorten(got) == got


def test_a_blank_first_line_still_gives_an_error_line():
    """matplotlib's parse errors begin with a newline: the error line named nothing."""
    assert _message(ValueError("\n\\frac{\n     ^\nParseSyntaxException")).startswith(
        "ValueError with an empty message (Inappropriate argument value")
    assert _message(OSError()).startswith("OSError with an empty message")
    assert _message(ValueError("bad input\nmore")) == "bad input"


def _folder(root, classes, size=(7, 5)):
    colours = [(220, 20, 20), (20, 220, 20), (20, 20, 220)]
    for name, colour in zip(classes, colours):
        (root / name).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", size, tuple(c + 3 * i for c in colour)).save(root / name / f"{i}.png")
    return root


@pytest.mark.slow
def test_a_data_folder_and_classes_named_like_math_train_resume_and_report(tmp_path,
                                                                          monkeypatch, capsys):
    """A folder d$\\frac{$ stopped training after its first epoch with an empty error line
    (drawing curves.png), so model.npz was never written; a class $\\frac{$ broke the report."""
    monkeypatch.setenv("CNNKIT_CACHE", str(tmp_path / "cache"))
    data = _folder(tmp_path / r"d$\frac{$", [r"$\frac{$", "a_b^c", "x$y"])
    out = tmp_path / "runs"
    assert main(["train", "--data", f"folder:{data}", "--epochs", "1", "--out", str(out),
                 "--name", "r", "--layer-stats", "2", "--no-progress",
                 "--model", "CONV3-4 -> RELU -> GAP -> FC-3"]) == 0
    run = out / "r"
    assert (run / "model.npz").is_file() and (run / "curves.png").is_file()
    assert (run / "layer_stats.png").is_file()
    assert main(["train", "--resume", str(run / "checkpoint.npz"), "--epochs", "2",
                 "--no-progress"]) == 0
    assert main(["report", str(run), "--no-progress"]) == 0
    assert "error" not in capsys.readouterr().err
    page = (run / "report.html").read_text(encoding="utf-8")
    assert html.escape(r"$\frac{$") in page and page.count("data:image/png") >= 5
