"""The benchmark harness (``benchmarks/``) runs end to end on tiny inputs, its guard refuses a
wrong kernel, and its JSON is valid. Nothing here asserts on speed: every measurement is one
call on small arrays."""

import dataclasses
import doctest
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("threadpoolctl")

from benchmarks import guard, memory, report, suite, timing  # noqa: E402
from benchmarks.cases import CASES, conv_case, pool_case  # noqa: E402
from benchmarks.guard import KernelMismatch  # noqa: E402
from benchmarks.kernels import check_case, time_case  # noqa: E402
from benchmarks.nets import NETS, cnnkit_net, torch_net  # noqa: E402
from benchmarks.steps import check_nets  # noqa: E402
from benchmarks.threads import thread_count  # noqa: E402
from cnnkit import functional as F  # noqa: E402

ONCE = dict(repeats=1, warmup=0, budget=0.0)
TINY_CONV = conv_case("tiny-conv", 2, 3, 6, 4, 3, stride=2, pad=1)   # floored: strict=False


def _inputs(case, seed=0):
    rng = np.random.default_rng(seed)
    arrays = case.setup(rng)
    out, _ = case.cnnkit_forward(arrays)
    return arrays, rng.standard_normal(out.shape, dtype=np.float32)


def test_the_case_table():
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names)
    assert set(names) <= set(suite.case_names())
    for case in CASES:
        assert case.inputs[0] == "x" and case.description
        assert (case.flops is not None) == case.name.startswith(("conv", "linear")), case.name
    conv3x3 = next(c for c in CASES if c.name == "conv3x3")
    assert conv3x3.flops == 2 * 64 * 64 * 32 * 3 * 3 * 32 * 32


def test_one_kernel_case_gives_two_rows_with_ratios_and_peak_fractions():
    with thread_count(1, torch) as threads:
        assert threads["numpy_blas"] == 1 and threads["torch"] == 1
        rows = suite.kernel_rows(TINY_CONV, suite.Settings(**ONCE), peak_gflops=100.0)
    assert [r["pass"] for r in rows] == ["fwd", "fwd+bwd"]
    assert rows[1]["flops"] == 3 * rows[0]["flops"] == 3 * 2 * 2 * 4 * 3 * 9 * 3 * 3
    for row in rows:
        assert set(row["ms"]) == set(report.SIDES) and all(v > 0 for v in row["ms"].values())
        assert row["ratio"]["nchw"] == row["ms"]["cnnkit"] / row["ms"]["torch_nchw"]
        assert row["fraction_of_sgemm_peak"]["cnnkit"] > 0
        assert row["timings"]["cnnkit"]["repeats"] == 1
    assert report.format_row(rows[0]).startswith("tiny-conv")


def test_a_layout_free_case_leaves_channels_last_empty():
    pool = pool_case("tiny-pool", 2, 3, 7, 3, 2)
    assert pool.description.endswith("-> 3x3")
    linear = next(c for c in CASES if c.name == "linear")
    small = dataclasses.replace(linear, setup=lambda rng: {
        "x": rng.standard_normal((3, 5), dtype=np.float32),
        "w": rng.standard_normal((4, 5), dtype=np.float32),
        "b": rng.standard_normal(4, dtype=np.float32)})
    results = time_case(small, **ONCE)
    assert results["fwd"]["torch_channels_last"] is None
    row = report.make_row("linear", "fwd", "kernel", "", results["fwd"], flops=120,
                          peak_gflops=None)
    assert row["ratio"]["channels_last"] is None and row["fraction_of_sgemm_peak"]["cnnkit"] is None
    assert "-" in report.format_row(row).split()


def test_the_guard_refuses_a_wrong_forward_and_a_wrong_backward():
    relu = next(c for c in CASES if c.name == "relu")
    tiny = dataclasses.replace(relu, setup=lambda rng: {
        "x": rng.standard_normal((2, 3, 4, 4), dtype=np.float32)})
    arrays, dout = _inputs(tiny)
    check_case(tiny, arrays, dout)                         # the right kernel passes

    def off_by_a_bit(a):
        out, cache = F.relu_forward(a["x"])
        return out * np.float32(1.01), cache

    with pytest.raises(KernelMismatch, match=r"relu \(nchw\): cnnkit's forward output differs"):
        time_case(dataclasses.replace(tiny, cnnkit_forward=off_by_a_bit), **ONCE)
    double_dx = dataclasses.replace(
        tiny, cnnkit_backward=lambda dout, cache: (2 * F.relu_backward(dout, cache),))
    with pytest.raises(KernelMismatch, match="gradient dx"):
        check_case(double_dx, arrays, dout)
    with pytest.raises(KernelMismatch, match="shape"):
        guard.check_close("c", "out", np.zeros(3), np.zeros(4))


def test_the_torch_nets_match_the_cnnkit_nets(rng):
    for name, (_, shape) in NETS.items():
        model = cnnkit_net(name)
        x = rng.standard_normal((2, *shape), dtype=np.float32)
        y = rng.integers(0, 10, 2)
        for layout in ("nchw", "channels_last"):
            check_nets(name, model, torch_net(model, channels_last=layout == "channels_last"),
                       x, y, layout)


def test_the_suite_runs_one_case_and_writes_json(tmp_path, monkeypatch):
    relu = next(c for c in CASES if c.name == "relu")
    monkeypatch.setattr(suite, "CASES", [dataclasses.replace(relu, setup=lambda rng: {
        "x": rng.standard_normal((2, 3, 4, 4), dtype=np.float32)})])
    lines = []
    payload = suite.run(suite.Settings(only="^relu$", **ONCE), emit=lines.append)
    assert any(line.startswith("threads: 1 (NumPy BLAS 1, PyTorch 1)") for line in lines)
    assert [r["case"] for r in payload["rows"]] == ["relu", "relu"]
    assert payload["memory"] == [] and payload["sgemm"] is None
    path = report.write_json(tmp_path / "results" / "run.json", payload)
    loaded = json.loads(path.read_text())
    assert loaded["rows"][1]["pass"] == "fwd+bwd"
    assert loaded["machine"]["numpy"] == np.__version__
    assert set(loaded["machine"]["openblas_env"]) == {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}


def test_memory_of_a_step_in_a_subprocess():
    result = memory.measure_memory("cnnkit", "mnist", threads=1, timeout=120)
    assert "error" not in result, result
    assert result["tracemalloc_peak_mib"] > 1
    if result["rss_peak_delta_mib"] is not None:                 # Linux
        assert result["rss_peak_delta_mib"] >= 0 and result["rss_baseline_mib"] > 0
    assert report.memory_table([result])[1].startswith("mnist cnnkit")


def test_the_timer_and_the_doctests():
    t = timing.measure(lambda: None, repeats=5, warmup=1, budget=0.0, min_repeats=2)
    assert len(t.samples) == 2 and t.to_dict()["repeats"] == 2
    with pytest.raises(ValueError):
        timing.measure(lambda: None, repeats=0)
    for module in (timing, guard):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_the_trainer_benchmark_times_every_variant(capsys):
    from benchmarks.trainer import main, measure_epochs

    assert main(["--images", "64", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for variant in ("bare", "trainer", "layer stats", "progress bar"):
        assert out.count(f"  {variant} ") == 2, variant
    rng = np.random.default_rng(0)
    from cnnkit import nn

    samples = measure_epochs(lambda: nn.Sequential(nn.Linear(4, 3, rng=rng)),
                             rng.standard_normal((40, 4)).astype(np.float32),
                             rng.integers(0, 3, 40), batch=8, repeats=2)
    assert {k: len(v) for k, v in samples.items()} == {"bare": 2, "trainer": 2,
                                                      "layer stats": 2, "progress bar": 2}
    assert all(t > 0 for v in samples.values() for t in v)
