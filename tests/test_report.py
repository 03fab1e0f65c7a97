"""`cnnkit report RUN_DIR`: one self-contained page on a real (tiny) training run, checked as
text and as headless Chromium renders it."""

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main
from cnnkit import errors as cnnkit_errors
from cnnkit import load_run

SPEC = "CONV3-4 -> RELU -> POOL2 -> FC-10"
SECTIONS = ("headline", "curves", "evaluation", "settings", "model", "layers", "filters", "maps",
            "timing")
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run of `cnnkit train --report`: one epoch of a tiny net on 600 MNIST images (about a
    second), its report written at the end; layer statistics every iteration (9 records)."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--limit", "600", "--epochs", "1", "--out", str(out), "--name", "r",
                 "--model", SPEC, "--no-progress", "--layer-stats", "1", "--report"]) == 0
    return out / "r"


def test_cnnkit_report_writes_the_page_where_asked(capsys, run_dir, tmp_path):
    assert main(["report", str(run_dir), "-o", str(tmp_path / "page.html"),
                 "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'page.html'}"
    again = (tmp_path / "page.html").read_text(encoding="utf-8")
    first = (run_dir / "report.html").read_text(encoding="utf-8")
    for key in SECTIONS:
        assert f'<section id="{key}">' in again and f'<section id="{key}">' in first
    # the layer statistics: 9 records of 9 iterations, enough for a verdict on each weight
    assert "9 records from iteration 1 to 9 (every 1 iterations, and the first)" in again
    assert "Medians over the 5 records of the second half of training (iterations 5 to 9)" \
        in again
    assert re.search(r"The updates: [0-2] of 2 weights flagged", again)
    assert "Too few records" not in again


@pytest.fixture(scope="module")
def page(run_dir):
    return (run_dir / "report.html").read_text(encoding="utf-8")


class _Balance(HTMLParser):
    """Checks that every non-void element is closed in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.problems = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_the_page_holds_every_section_with_its_pictures(page):
    assert page.startswith("<!DOCTYPE html>")
    assert re.search(r"<title>cnnkit report: r</title>", page)
    for key in SECTIONS:
        assert f'<section id="{key}">' in page, key
    checker = _Balance()
    checker.feed(page)
    assert checker.problems == [] and checker.stack == []
    sources = re.findall(r'<img src="([^"]*)"', page)
    # thumbnail, curves, confusion matrix, misclassified, layer statistics, filters,
    # activation maps, saliency
    assert len(sources) == 8
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert img.format == "PNG" and img.size[0] > 200
    # nothing is fetched: every src and href is inline or a link within the page
    assert re.findall(r'(?:src|href)="(?!data:|#)[^"]*"', page) == []
    assert "<script" not in page and "<link" not in page


def test_the_page_shows_the_settings_model_accuracy_and_times(page, run_dir):
    settings = _settings(run_dir)
    assert "INPUT[1x28x28] -&gt; CONV3-4 -&gt; RELU -&gt; POOL2 -&gt; FC-10" in page  # escaped
    for key in ("optimizer", "batch_size", "limit", "augment"):
        assert f"<td>{key}</td><td>{settings[key]}</td>" in page, key
    assert "Conv2d(1, 4, kernel_size=(3, 3), padding=(1, 1))" in page
    assert re.search(r"accuracy 0\.\d{4}</strong> \(\d+ of 600 images\)", page)
    assert "its first 600 images" in page
    assert re.search(r"median of \d+ pass", page) and "forward ms" in page


def _settings(run_dir):
    from cnnkit.io import load_checkpoint

    return load_checkpoint(run_dir / "model.npz").extra["metadata"]["settings"]


def test_a_net_with_nan_weights_is_reported_as_such(run_dir, tmp_path):
    from cnnkit.io import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(run_dir / "model.npz")
    model = ckpt.build_model()
    model.parameters()[0].data[0, 0, 0, 0] = np.nan
    save_checkpoint(tmp_path / "model.npz", model, extra=ckpt.extra)
    page = load_run(tmp_path).report(progress=False, allow_nonfinite=True).read_text(
        encoding="utf-8")
    assert "holds NaN or infinite values (0.weight holds NaN (1 of 36 values))" in page


def test_a_run_still_training_renders_what_it_can(run_dir, tmp_path):
    """No model.npz and no history.json yet: the last epoch's weights, no curves."""
    shutil.copy(run_dir / "checkpoint.npz", tmp_path / "checkpoint.npz")
    path = load_run(tmp_path).report(tmp_path / "out" / "page.html", progress=False)
    page = path.read_text(encoding="utf-8")
    assert "model.npz is not written yet" in page
    assert "No history yet" in page
    assert len(re.findall(r"<img ", page)) == 5
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("setup, fragments", [
    ("missing", ["run folder not found", "nowhere"]),
    ("empty", ["holds no model.npz", "not a run folder of `cnnkit train`"]),
    ("history", ["history.json is damaged"]),
    ("model", ["model.npz", "not a readable cnnkit checkpoint"]),
])
def test_a_broken_run_folder_is_one_error_line(capsys, run_dir, tmp_path, setup, fragments):
    folder = tmp_path / "run"
    if setup != "missing":
        folder.mkdir()
    if setup == "history":
        shutil.copy(run_dir / "model.npz", folder / "model.npz")
        (folder / "history.json").write_text('{"epoch": [1, ')
    if setup == "model":
        (folder / "model.npz").write_bytes(b"PK\x03\x04 not really a zip")
    code = main(["report", str(tmp_path / "nowhere" if setup == "missing" else folder),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not (folder / "report.html").exists()


# ---------------------------------------------------------------------------- in a browser

def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def chromium():
    path = _chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("headless Chromium is required under CI (.ci/run installs the Debian "
                        "package chromium) but neither chromium nor chromium-browser is on PATH")
        pytest.skip("headless Chromium is not installed (Debian package chromium)")
    return path


# Runs first in <head>: records script errors, failed loads and console.error calls, and on
# load writes what it found into <pre id="check"> for --dump-dom to carry out.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(String(e.message || (e.target && (e.target.src || "").slice(0, 40))));
}, true);
var _consoleError = console.error;
console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, " "));
  _consoleError.apply(console, arguments);
};
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var pre = document.createElement("pre");
  pre.id = "check";
  pre.textContent = JSON.stringify({
    images: imgs.length,
    decoded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    errors: window.__errors, title: document.title,
    sections: document.querySelectorAll("section h2").length,
    first: document.querySelector("section").id,
    answer: document.querySelector("strong.answer").getBoundingClientRect().top + window.scrollY,
    height: document.documentElement.scrollHeight,
    overflow: document.documentElement.scrollWidth > window.innerWidth + 1
  });
  document.body.appendChild(pre);
});
</script>"""


def _browse(chromium, tmp_path, *args):
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_chromium_renders_the_page_with_every_image_and_no_error(chromium, page, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
    result = _browse(chromium, tmp_path, "--virtual-time-budget=10000", "--dump-dom",
                     "--window-size=1200,900", probed.as_uri())
    found = re.search(r'<pre id="check">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no check in the dumped DOM (rc {result.returncode}): {result.stderr[-800:]}"
    check = json.loads(html.unescape(found.group(1)))
    assert check["title"] == "cnnkit report: r"
    assert check["errors"] == []
    assert check["images"] == 8 and check["decoded"] == 8
    assert check["sections"] == len(SECTIONS)
    assert not check["overflow"], "the page is wider than a 1200-pixel window"
    # the answer is on the first screen of a 1200 x 900 window, the rest below it
    assert check["first"] == "headline"
    assert 0 < check["answer"] < 400 < check["height"], check


def test_chromium_screenshot_is_not_blank(chromium, run_dir, tmp_path):
    shot = tmp_path / "shot.png"
    result = _browse(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1200,6000",
                     (run_dir / "report.html").as_uri())
    assert shot.is_file(), f"no screenshot (rc {result.returncode}): {result.stderr[-800:]}"
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 6000)
    colours = img.getcolors(maxcolors=1 << 24)
    assert len(colours) > 500                      # text, tables and plots, not a blank page
    # the page is mostly white paper; at least some percent of it must be ink and pictures
    ink = sum(n for n, rgb in colours if min(rgb) < 200)
    assert ink > 0.03 * img.size[0] * img.size[1]


# ---------------------------------------------------------------------------- the layout

class _Sections(HTMLParser):
    """The page's sections in order: [(id, text inside it)], and the text before the first."""

    def __init__(self):
        super().__init__()
        self.sections, self.before, self._depth, self._body = [], [], 0, False

    def handle_starttag(self, tag, attrs):
        self._body = self._body or tag == "body"
        if tag == "section":
            self.sections.append([dict(attrs)["id"], ""])
        if tag == "section" or self._depth:
            self._depth += tag not in VOID

    def handle_endtag(self, tag):
        if self._depth:
            self._depth -= 1

    def handle_data(self, data):     # a space between elements' texts: "<td>a</td><td>b" is "a b"
        if self._depth:
            self.sections[-1][1] += data + " "
        elif self._body and not self.sections:
            self.before.append(data + " ")


def _sections(page):
    parser = _Sections()
    parser.feed(page)
    return parser


def test_the_page_leads_with_the_answer(page, run_dir):
    """The first section is the headline: the test accuracy exactly as test.json says, the
    best epoch, the time trained and the data and model in one line; then the sections in
    the page's order."""
    test = json.loads((run_dir / "test.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    parsed = _sections(page)
    assert [key for key, _ in parsed.sections] == list(SECTIONS)
    key, text = parsed.sections[0]
    text = " ".join(text.split())
    right = round(test["accuracy"] * test["images"])
    assert f"Test accuracy {test['accuracy']:.4f} ({right:,} of 600 test images)" in text
    assert (f"best epoch epoch 1 of 1, validation accuracy {history['val_acc'][0]:.4f}"
            in text)
    assert re.search(r"time trained \d+\.\d s \(1 epoch, 9 iterations, validation included\)",
                     text)
    assert (f"data and model {_settings(run_dir)['model']} on MNIST (600 train+val / 600 "
            f"test images, 1x28x28, 10 classes)") in text
    # before the first section only the title and the links
    assert " ".join("".join(parsed.before).split()) == (
        "cnnkit report: r " + " ".join(
            ["At a glance", "Training curves", "Test evaluation", "Settings", "Model",
             "Inside the layers", "First-layer filters", "One image through the net",
             "Per-layer time"]))
    # the thumbnail links to the curves
    assert re.search(r'<a class="thumb" href="#curves"[^>]*><img ', page)


def test_the_headline_reads_the_run_s_test_result(run_dir, tmp_path):
    """The accuracy the run recorded (test.json), not one the page measures again; a run that
    recorded none is measured by the page, and the headline says so."""
    for name in ("model.npz", "history.json"):
        shutil.copy(run_dir / name, tmp_path / name)
    (tmp_path / "test.json").write_text('{"accuracy": 0.12345, "loss": 2.5, "images": 600}')
    page = load_run(tmp_path).report(tmp_path / "a.html", sections="headline").read_text(
        encoding="utf-8")
    (key, text), = _sections(page).sections
    assert "Test accuracy 0.1235 (74 of 600 test images)" in " ".join(text.split())
    (tmp_path / "test.json").unlink()
    page = load_run(tmp_path).report(tmp_path / "b.html", sections="headline").read_text(
        encoding="utf-8")
    test = json.loads((run_dir / "test.json").read_text())
    assert (f"Test accuracy {test['accuracy']:.4f} ({round(test['accuracy'] * 600)} of 600 "
            f"images, measured by this page: the run recorded no test result)") in " ".join(
        _sections(page).sections[0][1].split())


def test_a_damaged_history_s_time_is_a_question_mark(run_dir, tmp_path):
    """Epoch seconds of Infinity (JSON allows it) sum to no time: the headline says "?"."""
    for name in ("model.npz", "test.json"):
        shutil.copy(run_dir / name, tmp_path / name)
    history = json.loads((run_dir / "history.json").read_text())
    history["seconds"] = [float("inf")] * len(history["seconds"])
    (tmp_path / "history.json").write_text(json.dumps(history))
    page = load_run(tmp_path).report(tmp_path / "a.html", sections="headline").read_text(
        encoding="utf-8")
    assert "time trained ? (" in " ".join(_sections(page).sections[0][1].split())


def test_every_setting_is_shown_once(page, run_dir):
    settings = _settings(run_dir)
    cells = re.findall(r"<tr><td>([^<]*)</td><td>", page)
    for key in settings:
        assert cells.count(key) == 1, key
    # no second home for the data source, the parameters or the model's name
    assert "data source" not in page and "<td>parameters</td>" not in page
    assert page.count(f"<td>{html.escape(settings['model'])}</td>") == 1


def _ids(page):
    return [key for key, _ in _sections(page).sections]


@pytest.mark.parametrize("spec, kept", [
    ("headline,curves", ["headline", "curves"]),
    ("curves, HEADLINE", ["headline", "curves"]),              # the page's order, any case
    ("-timing,-maps,-filters,-evaluation",
     ["headline", "curves", "settings", "model", "layers"]),
    ("all,-evaluation,-maps,-filters,-timing,-layers", ["headline", "curves", "settings",
                                                         "model"]),
    ("settings,model,-model", ["settings"]),                    # left to right
])
def test_sections_keeps_what_it_names(capsys, run_dir, tmp_path, spec, kept):
    out = tmp_path / "page.html"
    assert main(["report", str(run_dir), "-o", str(out), "--no-progress",
                 f"--sections={spec}"]) == 0
    page = out.read_text(encoding="utf-8")
    assert _ids(page) == kept
    assert re.findall(r'<nav>(.*?)</nav>', page)[0].count("<a ") == len(kept)


def test_run_report_takes_sections_as_a_list(run_dir, tmp_path):
    path = load_run(run_dir).report(tmp_path / "p.html", sections=["-timing", "-maps",
                                                                     "-evaluation"])
    assert _ids(path.read_text(encoding="utf-8")) == [
        "headline", "curves", "settings", "model", "layers", "filters"]


@pytest.mark.parametrize("spec, fragments", [
    ("headline,timming", ["no section 'timming'", "did you mean 'timing'?",
                          "the sections: headline, curves, evaluation"]),
    ("headline,,curves", ["an empty name"]),
    ("-all", ["leaves no section"]),
    ("plots", ["no section 'plots'", "the sections: headline"]),
])
def test_a_bad_sections_list_is_one_line(capsys, run_dir, tmp_path, spec, fragments):
    out = tmp_path / "page.html"
    code = main(["report", str(run_dir), "-o", str(out), "--no-progress", f"--sections={spec}"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not out.exists()


def test_select_sections():
    from cnnkit.report import SECTIONS as ALL, select_sections

    assert select_sections() == select_sections("all") == tuple(ALL)
    assert select_sections("maps,headline") == ("headline", "maps")
    assert select_sections("-headline") == tuple(ALL)[1:]
    with pytest.raises(cnnkit_errors.UsageError, match="did you mean 'layers'"):
        select_sections(["layer"])
    with pytest.raises(cnnkit_errors.UsageError, match="a list of names; got int"):
        select_sections(5)


# ---------------------------------------------------------------------------- the verdict

def _stats(iterations, weights):
    """LayerStats with records at ``iterations`` of ``weights``: name -> (weight norms,
    gradient norms, update ratios), each a list aligned with the iterations."""
    from cnnkit.monitor import LayerStats

    return LayerStats.from_dict({
        "every": 1, "iterations": list(iterations), "layers": {},
        "params": {name: {"weight_norm": w, "grad_norm": g, "update_ratio": r}
                   for name, (w, g, r) in weights.items()}})


def test_the_verdict_needs_five_records_three_in_the_second_half():
    from cnnkit.report import judge_updates, too_few_records

    flat = ([1.0] * 6, [0.1] * 6, [1e-3] * 6)
    enough = _stats([1, 20, 40, 60, 80, 100], {"0.weight": flat})
    assert too_few_records(enough, 100) is None
    assert [v.verdict for v in judge_updates(enough, 100)] == ["about right"]
    # the same records of a run 4 times as long: 5 of them in its first half
    reason = too_few_records(enough, 400)
    assert reason.startswith("Too few records for a verdict on the updates: the layer "
                             "statistics hold 6 records (iterations 1, 20, 40, 60, 80, 100) "
                             "of this run's 400 iterations, 0 in its second half; a verdict "
                             "needs at least 5 records, 3 of them in the second half.")
    assert reason.endswith("Train with --layer-stats 20 to record about 20 times over a run "
                           "this long.")
    with pytest.raises(cnnkit_errors.UsageError, match="Too few records"):
        judge_updates(enough, 400)
    four = _stats([1, 40, 70, 100], {"0.weight": tuple(v[:4] for v in flat)})
    assert "hold 4 records" in too_few_records(four, 100)
    one = _stats([1], {"0.weight": ([1.0], [0.1], [0.5])})
    assert "hold 1 record (iteration 1) of this run's 48 iterations, 0 in its second half" \
        in too_few_records(one, 48)


def test_the_verdict_is_on_the_second_half_s_medians():
    """Adam's first steps (ratios of 1e-1) and one bad batch late do not decide it; a run
    whose updates stay large, or small, does; a weight that grew 30x diverged; one without
    gradients stalled; biases are not judged."""
    from cnnkit.report import judge_updates

    its = list(range(1, 11))
    early_big = [0.1, 0.08, 0.05, 0.02, 0.01, 2e-3, 1e-3, 1e-3, 1e-3, 0.5]   # one spike, last
    weights = {
        "0.weight": ([1.0] * 10, [0.5] * 10, early_big),
        "0.bias": ([1.0] * 10, [0.5] * 10, [1.0] * 10),
        "1.weight": ([1.0] * 10, [0.5] * 10, [0.05] * 10),
        "2.weight": ([1.0] * 10, [0.5] * 10, [1e-3] * 5 + [5e-5] * 5),
        "3.weight": ([1.0] * 5 + [30.5] * 5, [0.5] * 10, [1e-3] * 10),
        "4.weight": ([1.0] * 10, [0.5] * 5 + [0.0] * 5, [1e-3] * 5 + [0.0] * 5),
        "5.weight": ([1.0] * 9 + [float("nan")], [0.5] * 10, [1e-3] * 10),
    }
    verdicts = judge_updates(_stats(its, weights), 10)
    assert [(v.weight, v.verdict) for v in verdicts] == [
        ("0.weight", "about right"), ("1.weight", "high"), ("2.weight", "low"),
        ("3.weight", "diverged"), ("4.weight", "stalled"), ("5.weight", "non-finite")]
    assert verdicts[0].ratio == 1e-3 and verdicts[0].grad_norm == 0.5
    assert verdicts[3].growth == 30.5 and verdicts[3].advice == (
        "grew 30.5x: the learning rate is too large")
    assert verdicts[1].advice == "high: the learning rate may be too large"
    assert verdicts[2].advice == "low: the learning rate may be too small"
    assert [v.flagged for v in verdicts] == [False, True, True, True, True, True]


@pytest.fixture(scope="module")
def one_record_run(tmp_path_factory):
    """9 iterations with --layer-stats 50: one record, at iteration 1."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--limit", "600", "--epochs", "1", "--out", str(out), "--name", "one",
                 "--model", SPEC, "--no-progress", "--layer-stats", "50"]) == 0
    return out / "one"


def _layers_text(page):
    (text,) = [text for key, text in _sections(page).sections if key == "layers"]
    return " ".join(text.split())


def test_one_record_gives_no_verdict_and_says_why(one_record_run, tmp_path):
    page = load_run(one_record_run).report(tmp_path / "p.html", sections="layers").read_text(
        encoding="utf-8")
    text = _layers_text(page)
    assert "1 record at iteration 1 (every 50 iterations, and the first)" in text
    assert ("Too few records for a verdict on the updates: the layer statistics hold 1 record "
            "(iteration 1) of this run's 9 iterations, 0 in its second half" in text)
    assert "Train with --layer-stats 1 to record about 20 times" in text
    assert "learning rate" not in text and "verdict</th>" not in page
    assert len(re.findall(r"<img ", page)) == 1             # the records as they are


def test_a_run_with_far_too_large_a_rate_is_told_so(tmp_path):
    """SGD at lr 3 on the tiny net: the weights run away, and the page says so."""
    assert main(["train", "--limit", "600", "--epochs", "2", "--out", str(tmp_path), "--name",
                 "bad", "--model", SPEC, "--no-progress", "--layer-stats", "1", "--optimizer",
                 "sgd", "--lr", "3"]) == 0
    page = load_run(tmp_path / "bad").report(tmp_path / "p.html", sections="layers").read_text(
        encoding="utf-8")
    text = _layers_text(page)
    assert "The updates: 2 of 2 weights flagged" in text
    assert "Medians over the 9 records of the second half of training (iterations 10 to 18)" \
        in text
    assert len(re.findall(r"x: the learning rate is too large", text)) == 2, text
    assert "Too few records" not in text


def test_a_deep_net_s_long_tables_are_folded(tmp_path):
    """9 conv layers (on 7x7 maps, to be quick), 32 rows: the layer table folds under
    <details>, and the activation maps show 8 channels of each layer (one row), not 16."""
    deep = "POOL2 -> POOL2 -> " + " -> ".join(["CONV3-4 -> BN -> RELU"] * 9) + " -> GAP -> FC-10"
    assert main(["train", "--limit", "100", "--epochs", "1", "--out", str(tmp_path), "--name",
                 "deep", "--model", deep, "--no-progress", "--layer-stats", "0"]) == 0
    page = load_run(tmp_path / "deep").report(
        tmp_path / "p.html", sections="model,maps").read_text(encoding="utf-8")
    assert re.search(r"<details><summary>Show the layer table \(3\d rows\)</summary>\n<table ",
                     page)
    assert "The first 8 channels (at most) of each of the 9 conv layers." in page
    checker = _Balance()
    checker.feed(page)
    assert checker.problems == [] and checker.stack == []


def test_a_huge_sections_value_is_quoted_short():
    from cnnkit.report import select_sections

    with pytest.raises(cnnkit_errors.UsageError) as err:
        select_sections("x" * 100_000)
    assert str(err.value).startswith("--sections: no section 'xxxxxxxx") and len(
        str(err.value)) < 250
    with pytest.raises(cnnkit_errors.UsageError) as err:
        select_sections("headline,," + "y" * 100_000)
    assert "an empty name" in str(err.value) and len(str(err.value)) < 250
