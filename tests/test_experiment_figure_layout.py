"""The experiments' figures (vanishing-gradients' at initialisation, small-batch's): no title or
label overlaps another, and each lies inside the figure (a rotated y-label taller than its panel
once ran into the figure's title)."""

import itertools

import numpy as np
import pytest

from cnnkit.experiments import vanishing


def _texts(fig):
    """The figure's title and every panel's title and axis labels that have text, drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)    # what savefig draws with
    canvas.draw()                    # constrained layout places everything on a draw
    renderer = canvas.get_renderer()
    texts = [fig._suptitle] + [t for ax in fig.axes
                               for t in (ax.title, ax.xaxis.label, ax.yaxis.label)]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts
            if t is not None and t.get_text()]


def _texts_that_fit(fig) -> int:
    """Assert that every text of ``_texts`` lies inside the figure and overlaps no other;
    return how many there are."""
    texts = _texts(fig)
    frame = fig.bbox
    for text, box in texts:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 \
            and box.y1 <= frame.y1, f"{text!r} leaves the figure"
    for (a, box_a), (b, box_b) in itertools.combinations(texts, 2):
        assert not box_a.overlaps(box_b), f"{a!r} overlaps {b!r}"
    return len(texts)


@pytest.mark.parametrize("depth", [3, 9])
def test_the_figure_at_init_has_no_overlapping_text(tmp_path, monkeypatch, depth):
    kept = []
    monkeypatch.setattr(vanishing, "finish", lambda fig, path: kept.append(fig))
    monkeypatch.setattr(vanishing, "close", lambda fig: None)
    config = vanishing.Config(depth=depth, width=100, probe_size=1000)
    norms = np.logspace(-7, 0, depth + 1)[None]                  # one snapshot, at step 0
    nets = {name: {"weight_grad_norm": norms, "input_grad_norm": norms}
            for name in vanishing.STYLE}
    vanishing._plot_init(nets, config, tmp_path / "init.png")
    [fig] = kept
    assert _texts_that_fit(fig) == 7    # the figure's title, 2 x (title, x and y label)


@pytest.mark.parametrize("title", ["MNIST", "the folder /data/" + "a-long-folder-name/" * 4])
def test_the_small_batch_figure_has_no_overlapping_text(tmp_path, monkeypatch, title):
    from cnnkit.experiments import small_batch

    kept = []
    monkeypatch.setattr(small_batch, "finish", lambda fig, path: kept.append(fig))
    monkeypatch.setattr(small_batch, "close", lambda fig: None)
    config = small_batch.Config()
    sizes = list(config.batch_sizes)
    nets = {norm: {"test_error": np.linspace(0.05, 0.01, len(sizes)),
                   "final_loss": np.logspace(-1, -3, len(sizes))} for norm in config.norms}
    small_batch._plot({"batch_sizes": sizes, "data_title": title, "nets": nets}, config,
                      tmp_path / "f.png")
    [fig] = kept
    assert _texts_that_fit(fig) == 7    # the figure's title, 2 x (title, x and y label)
