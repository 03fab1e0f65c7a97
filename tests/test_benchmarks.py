"""The benchmark harness (``benchmarks/``) runs end to end on tiny inputs, its guard refuses a
wrong kernel, and its JSON is valid. Nothing here asserts on speed: every measurement is one
call on small arrays."""

import argparse
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
from benchmarks.nets import (NETS, SPEC_NETS, batch_and_shape, cnnkit_net,  # noqa: E402
                             torch_net)
from benchmarks.steps import check_nets  # noqa: E402
from benchmarks.threads import library_defaults, thread_count  # noqa: E402
from cnnkit import functional as F  # noqa: E402
from cnnkit import parallel  # noqa: E402

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
        assert threads["numpy_blas"] == 1 and threads["torch"] == 1 and threads["cnnkit"] == 1
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
    for name in [*NETS, *SPEC_NETS]:
        _, shape = batch_and_shape(name)
        model = cnnkit_net(name)
        x = rng.standard_normal((2, *shape), dtype=np.float32)
        y = rng.integers(0, 10, 2)
        for layout in ("nchw", "channels_last"):
            check_nets(name, model, torch_net(model, channels_last=layout == "channels_last"),
                       x, y, layout)


def _tiny_relu(monkeypatch):
    relu = next(c for c in CASES if c.name == "relu")
    monkeypatch.setattr(suite, "CASES", [dataclasses.replace(relu, setup=lambda rng: {
        "x": rng.standard_normal((2, 3, 4, 4), dtype=np.float32)})])


def test_the_suite_runs_one_case_and_writes_json(tmp_path, monkeypatch):
    _tiny_relu(monkeypatch)
    lines = []
    payload = suite.run(suite.Settings(threads=1, defaults=False, only="^relu$", **ONCE),
                        emit=lines.append)
    assert "threads: 1 (cnnkit 1, NumPy BLAS 1, PyTorch 1)" in lines
    assert payload["schema"] == 2 and len(payload["runs"]) == 1
    assert [r["case"] for r in payload["runs"][0]["rows"]] == ["relu", "relu"]
    assert payload["runs"][0]["threads"]["cnnkit"] == 1 and payload["runs"][0]["sgemm"] is None
    assert payload["memory"] == [] and payload["speedups"] == [] and payload["defaults"] is None
    assert not any("speed-up" in line or "defaults" in line for line in lines)
    path = report.write_json(tmp_path / "results" / "run.json", payload)
    loaded = json.loads(path.read_text())
    assert loaded["runs"][0]["rows"][1]["pass"] == "fwd+bwd"
    assert loaded["settings"]["threads"] == [1]
    assert loaded["machine"]["numpy"] == np.__version__
    assert set(loaded["machine"]["openblas_env"]) == {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}


@pytest.mark.parametrize("default_count", [3, 2])
def test_the_suite_at_two_counts_adds_the_defaults_and_the_speedups(monkeypatch, default_count):
    """cnnkit's default count 3 is no measured configuration, so the defaults run; 2 (with
    NumPy's BLAS and PyTorch at 2 too) is the 2-thread configuration, so they are not rerun."""
    _tiny_relu(monkeypatch)
    monkeypatch.setattr(parallel, "default_num_threads", lambda: default_count)
    torch_before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with thread_count(2):                    # NumPy's BLAS at 2 when the run starts
            lines = []
            payload = suite.run(suite.Settings(threads=(2, 1), only="^relu$", **ONCE),
                                emit=lines.append)
            assert parallel.get_num_threads() == 2 and torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(torch_before)
    names = [r["name"] for r in payload["runs"]]
    assert "threads: 1 (cnnkit 1, NumPy BLAS 1, PyTorch 1)" in lines
    assert "threads: 2 (cnnkit 2, NumPy BLAS 2, PyTorch 2)" in lines
    defaults = payload["defaults"]
    assert defaults["counts"] == {"cnnkit": default_count, "numpy_blas": 2, "torch": 2}
    if default_count == 3:
        assert names == ["1 thread", "2 threads", "defaults"] and defaults["measured"]
        assert "threads: library defaults (cnnkit 3, NumPy BLAS 2, PyTorch 2)" in lines
        assert payload["runs"][2]["threads"]["cnnkit"] == 3
    else:
        assert names == ["1 thread", "2 threads"] and not defaults["measured"]
        assert defaults["same_as"] == "2 threads"
        assert any("the 2-thread table IS the defaults comparison" in line for line in lines)
    assert [(s["case"], s["pass"], s["from_threads"], s["to_threads"])
            for s in payload["speedups"]] == [("relu", "fwd", 1, 2), ("relu", "fwd+bwd", 1, 2)]
    header = lines.index(next(line for line in lines if line.startswith("speed-up from 1 to 2")))
    assert lines[header + 2].split()[:4] == ["case", "pass", "ck", "1t"]
    json.dumps(payload)


def test_defaults_same_as():
    same = suite.defaults_same_as
    assert same({"cnnkit": 2, "numpy_blas": 2, "torch": 2}, (1, 2)) == 2
    assert same({"cnnkit": 2, "numpy_blas": None, "torch": 2}, (1, 2)) == 2
    assert same({"cnnkit": 2, "numpy_blas": 1, "torch": 2}, (1, 2)) is None
    assert same({"cnnkit": 2, "numpy_blas": [1, 2], "torch": 2}, (1, 2)) is None
    assert same({"cnnkit": 4, "numpy_blas": 4, "torch": 2}, (1, 4)) is None
    assert same({"cnnkit": 1, "numpy_blas": 1, "torch": 1}, (1,)) == 1


def test_thread_count_sets_cnnkit_blas_and_torch_and_restores_them():
    parallel.set_num_threads(2)
    torch_before = torch.get_num_threads()
    try:
        with thread_count(3, torch) as threads:
            assert parallel.get_num_threads() == 3 and torch.get_num_threads() == 3
            assert threads["cnnkit"] == 3 and threads["torch"] == 3
            assert threads["numpy_blas"] in (3, None)
        assert parallel.get_num_threads() == 2 and torch.get_num_threads() == torch_before
        with pytest.raises(KeyError), thread_count(1):
            assert parallel.get_num_threads() == 1
            raise KeyError("a case failed")
        assert parallel.get_num_threads() == 2
        with library_defaults(torch, torch_before) as threads:
            assert threads["cnnkit"] == parallel.default_num_threads()
            assert threads["torch"] == torch_before
        assert parallel.get_num_threads() == 2
    finally:
        parallel.set_num_threads(parallel.default_num_threads())


def _fake_row(case, pass_, cnnkit_ms, nchw_ms, cl_ms):
    timings = {side: None if ms is None else timing.Timing((ms / 1e3,))
               for side, ms in zip(report.SIDES, (cnnkit_ms, nchw_ms, cl_ms))}
    return report.make_row(case, pass_, "kernel", "", timings)


def test_the_speedup_rows_and_table_from_fake_rows():
    low = [_fake_row("conv", "fwd", 10.0, 8.0, 6.0), _fake_row("linear", "fwd", 4.0, 2.0, None),
           _fake_row("only-low", "fwd", 1.0, 1.0, 1.0)]
    high = [_fake_row("linear", "fwd", 4.0, 1.0, None), _fake_row("conv", "fwd", 5.0, 2.0, 4.0)]
    rows = report.speedup_rows(low, high, 1, 2)
    assert [(r["case"], r["pass"]) for r in rows] == [("conv", "fwd"), ("linear", "fwd")]
    conv, linear = rows
    assert conv["cnnkit_ms"] == [10.0, 5.0] and (conv["from_threads"], conv["to_threads"]) == (1, 2)
    assert conv["speedup"] == pytest.approx({"cnnkit": 2.0, "torch_nchw": 4.0,
                                             "torch_channels_last": 1.5})
    assert conv["ratio_at_to_threads"] == pytest.approx({"nchw": 2.5, "channels_last": 1.25})
    assert linear["speedup"]["torch_channels_last"] is None
    assert linear["ratio_at_to_threads"]["channels_last"] is None
    lines = report.speedup_table(rows, 1, 2)
    assert lines[0].split() == ["case", "pass", "ck", "1t", "ms", "ck", "2t", "ms", "ck", "1->2",
                                "NCHW", "1->2", "CL", "1->2", "ck/NCHW@2", "ck/CL@2"]
    assert lines[1].split() == ["conv", "fwd", "10.00", "5.00", "2.00x", "4.00x", "1.50x",
                                "2.50x", "1.25x"]
    assert lines[2].split() == ["linear", "fwd", "4.00", "4.00", "1.00x", "2.00x", "-",
                                "4.00x", "-"]
    assert len({len(line) for line in lines}) == 1                  # the columns line up
    assert report.threads_label({"cnnkit": 2, "numpy_blas": 2, "torch": 1}) == \
        "cnnkit 2, NumPy BLAS 2, PyTorch 1"


def test_the_threads_option_and_the_settings_it_makes():
    from benchmarks.__main__ import build_parser, settings_from, thread_counts

    assert thread_counts("1,2") == (1, 2)
    assert thread_counts(" 4, 1,4 ") == (1, 4)
    assert thread_counts("2") == (2,)
    for bad in ("0", "1,,2", "two", "1,0", "", f"{parallel.MAX_THREADS + 1}"):
        with pytest.raises(argparse.ArgumentTypeError):
            thread_counts(bad)
    parser = build_parser()
    default = settings_from(parser.parse_args([]))
    assert default.threads == suite.default_thread_counts() and default.defaults
    assert default.threads[0] == 1 and default.threads[-1] == suite.all_cores()
    listed = settings_from(parser.parse_args(["--threads", "2,1", "--quick"]))
    assert listed.threads == (1, 2) and listed.defaults and listed.repeats == suite.QUICK["repeats"]
    single = settings_from(parser.parse_args(["--threads", "2", "--repeats", "7"]))
    assert single.threads == (2,) and not single.defaults and single.repeats == 7
    with pytest.raises(SystemExit):
        parser.parse_args(["--threads", "1,x"])
    assert suite.Settings(threads=3).threads == (3,)
    with pytest.raises(ValueError):
        suite.Settings(threads=())


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
    from benchmarks import machine

    for module in (timing, guard, machine):
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


def test_memory_alone_runs_no_configuration_and_uses_the_first_count(monkeypatch):
    calls = []
    monkeypatch.setattr(suite, "measure_memory", lambda framework, net, layout, threads: (
        calls.append(threads) or {"framework": framework, "net": net, "layout": layout,
                                  "threads": threads, "rss_baseline_mib": 1.0,
                                  "rss_peak_delta_mib": 1.0, "tracemalloc_peak_mib": None}))
    lines = []
    payload = suite.run(suite.Settings(threads=(3, 2), only="^memory-mnist$"), emit=lines.append)
    assert calls == [2, 2, 2] and payload["runs"] == [] and payload["speedups"] == []
    assert payload["defaults"] is None and not any(line.startswith("threads:") for line in lines)
    assert "memory: each step in a fresh process at 2 threads" in lines


# ----------------------------------------------------------------------------- extra shapes

def test_the_extra_cases_hold_other_shapes_and_pass_the_guard():
    from benchmarks.cases import extra_cases

    extra = extra_cases()
    names = [c.name for c in extra]
    assert len(set(names)) == len(names) and not set(names) & {c.name for c in CASES}
    assert suite.case_names() == [n for n in suite.case_names(extra=True) if n not in names]
    by_name = {c.name: c for c in extra}
    assert by_name["conv3x3-24x40"].description == "N=32 32->64 24x40 k3 s1 p1 -> 24x40"
    assert by_name["conv3x3-24x40"].flops == 2 * 32 * 64 * 32 * 9 * 24 * 40
    assert by_name["conv3x3-s2-56"].description.endswith("-> 28x28 (floored: strict=False)")
    assert by_name["maxpool2x2-24x40"].description.endswith("24x40 k2 s2 p0 -> 12x20")
    assert by_name["batchnorm2d-8x8"].description.startswith("N=64 C=256 8x8")
    for case in extra_cases(batch=2):             # every case's two sides agree, on a batch of 2
        arrays, dout = _inputs(case)
        assert arrays["x"].shape[0] == 2
        check_case(case, arrays, dout)
    wide = conv_case("wide", 2, 3, (5, 9), 4, 3, stride=2)    # (5-3)/2+1 x (9-3)/2+1
    out, _ = wide.cnnkit_forward(wide.setup(np.random.default_rng(0)))
    assert out.shape == (2, 4, 2, 4) and wide.flops == 2 * 2 * 4 * 3 * 9 * 2 * 4


def test_the_extra_cases_are_opt_in(capsys):
    from benchmarks.__main__ import build_parser, main, settings_from

    assert not settings_from(build_parser().parse_args([])).extra
    assert settings_from(build_parser().parse_args(["--extra"])).extra
    with pytest.raises(SystemExit) as exit_:
        main(["--only", "^conv5x5$"])
    assert exit_.value.code == 2
    assert "matches extra cases, which run with --extra" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the spec net

def test_the_spec_net_is_the_cifar_net_built_from_its_spec(rng):
    from benchmarks.nets import SPEC_NETS, batch

    spec_net, cifar = cnnkit_net("spec-cifar"), cnnkit_net("cifar")
    layers, expected = (m.config()["args"]["layers"] for m in (spec_net, cifar))
    assert layers[:-1] == expected[:-1]              # the classifier's init is the spec's own
    assert layers[-1]["args"]["in_features"] == expected[-1]["args"]["in_features"] == 2048
    x, y = batch("spec-cifar")
    assert x.shape == (SPEC_NETS["spec-cifar"][0], 3, 32, 32) and x.dtype == np.float32
    with pytest.raises(ValueError, match="unknown benchmark net"):
        cnnkit_net("spec-mnist")


def _fake_timings(ms=2.0):
    return {side: timing.Timing((ms / 1e3,)) for side in report.SIDES}


def test_the_spec_case_runs_first_with_no_thread_count_set(monkeypatch):
    """train-spec-cifar runs before any configuration and inside none: each library at the count
    it had when the run started (the timing is faked; the guard is tested above)."""
    seen = []

    def fake_training(net, **timed):
        from threadpoolctl import threadpool_info

        seen.append((net, parallel.get_num_threads(), torch.get_num_threads(),
                     [p["num_threads"] for p in threadpool_info()]))
        return _fake_timings()

    monkeypatch.setattr(suite, "time_training", fake_training)
    from threadpoolctl import threadpool_info

    before = (parallel.get_num_threads(), torch.get_num_threads(),
              [p["num_threads"] for p in threadpool_info()])
    lines = []
    payload = suite.run(suite.Settings(threads=(1, 2), only="spec", **ONCE), emit=lines.append)
    assert seen == [("spec-cifar", *before)]
    assert [r["name"] for r in payload["runs"]] == ["unconfigured"]
    run = payload["runs"][0]
    assert run["requested_threads"] is None and run["threads"]["cnnkit"] == before[0]
    assert run["rows"][0]["case"] == "train-spec-cifar" and "CONV3-128" in run["rows"][0]["spec"]
    title = next(i for i, line in enumerate(lines) if line.startswith("threads: none set"))
    assert lines[title + 1].startswith("measured on: ")
    assert lines[title + 3].startswith("train-spec-cifar  step")
    assert not any(line.startswith("threads: 1") for line in lines)     # no configuration ran
    single = []                              # a single --threads count leaves it out
    payload = suite.run(suite.Settings(threads=1, defaults=False, only="spec", **ONCE),
                        emit=single.append)
    assert payload["runs"] == [] and len(seen) == 1
    assert any("train-spec-cifar: not run" in line for line in single)


# ----------------------------------------------------------------------------- CPU and BLAS

def test_every_table_names_the_cpu_and_the_blas_core_type(monkeypatch):
    from threadpoolctl import threadpool_info

    from benchmarks.machine import machine_info, measured_on

    _tiny_relu(monkeypatch)
    monkeypatch.setattr(suite, "measure_memory", lambda framework, net, layout, threads: {
        "framework": framework, "net": net, "layout": layout, "threads": threads,
        "rss_baseline_mib": 1.0, "rss_peak_delta_mib": 1.0, "tracemalloc_peak_mib": None})
    lines = []
    payload = suite.run(suite.Settings(threads=(1, 2), only="^relu$|memory-mnist", **ONCE),
                        emit=lines.append)
    machine = payload["machine"]
    pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
    if pools and pools[0].get("architecture"):
        assert machine["blas"]["core_type"] == pools[0]["architecture"]
        assert f"core type {pools[0]['architecture']}" in measured_on(machine)
    assert machine["cpu_model"] in measured_on(machine)
    assert measured_on(machine) == measured_on(machine_info())
    line = f"measured on: {measured_on(machine)}"
    tables = [i for i, text in enumerate(lines) if text.startswith(("threads: ", "speed-up from",
                                                                     "memory: "))]
    # 1 thread, 2 threads, speed-ups, memory; and the library defaults' own table when they
    # are neither configuration (an earlier test may have left PyTorch at another count)
    defaults_measured = bool(payload["defaults"] and payload["defaults"]["measured"])
    assert len(tables) == 4 + defaults_measured
    assert all(lines[i + 1] == line for i in tables)


# ----------------------------------------------------------------------------- --compare

def _result(cpu="Intel(R) Xeon(R) Processor", core="SkylakeX", runs=None, memory=()):
    machine = {"cpu_model": cpu, "logical_cpus": 2, "numpy": "2.4.6", "torch": "2.13.0",
               "blas": {"library": "openblas", "version": "0.3.31", "core_type": core,
                        "threading_layer": "pthreads"}}
    threads = {"cnnkit": 1, "numpy_blas": 1, "torch": 1}
    runs = runs if runs is not None else {"1 thread": [("conv", "fwd", 10.0, 8.0, 5.0)]}
    return {"schema": 2, "created": "2025-01-02T03:04:05+0000", "duration_s": 12.5,
            "command": "python -m benchmarks --only conv",
            "settings": {"repeats": 20, "warmup": 3, "budget": 10.0, "quick": False},
            "machine": machine, "memory": list(memory),
            "runs": [{"name": name, "threads": threads, "rows": [
                _fake_row(*row) for row in rows]} for name, rows in runs.items()]}


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_compare_prints_both_results_side_by_side(tmp_path, capsys):
    from benchmarks.__main__ import main

    a = _result(runs={"1 thread": [("conv", "fwd", 10.0, 8.0, 5.0),
                                   ("pool", "fwd", 2.0, 4.0, 1.0)],
                      "2 threads": [("conv", "fwd", 6.0, 5.0, 4.0)]},
                memory=[{"net": "mnist", "framework": "cnnkit", "layout": "nchw",
                         "rss_peak_delta_mib": 20.0, "tracemalloc_peak_mib": 12.0}])
    b = _result(cpu="AMD EPYC 7B13", core="Zen",
                runs={"1 thread": [("conv", "fwd", 5.0, 10.0, 5.0),
                                   ("relu", "fwd", 1.0, 1.0, 1.0)],
                      "unconfigured": [("train-spec-cifar", "step", 300.0, 150.0, 100.0)]},
                memory=[{"net": "mnist", "framework": "cnnkit", "layout": "nchw",
                         "rss_peak_delta_mib": 10.0, "tracemalloc_peak_mib": 6.0}])
    assert main(["--compare", _write(tmp_path, "a.json", a), _write(tmp_path, "b.json", b)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"A: {tmp_path / 'a.json'}"
    assert "written 2025-01-02T03:04:05+0000 in 12.5 s by: python -m benchmarks --only conv" \
        in out[1]
    assert any("measured on: Intel(R) Xeon(R) Processor (2 logical CPUs); NumPy's BLAS: "
               "OpenBLAS 0.3.31, core type SkylakeX (pthreads)" in line for line in out)
    assert any("core type Zen" in line for line in out)
    assert any(line.startswith("  threads: 1 thread: cnnkit 1, NumPy BLAS 1, PyTorch 1")
               for line in out)
    differ = next(line for line in out if line.startswith("A and B differ"))
    assert "CPUs (A: Intel(R) Xeon(R) Processor; B: AMD EPYC 7B13)" in differ
    assert "BLAS core types (A: SkylakeX; B: Zen)" in differ

    def row(case, title):
        start = out.index(next(line for line in out if line.startswith(title)))
        return next(line for line in out[start:] if line.startswith(case)).split()

    assert row("conv", "1 thread") == ["conv", "fwd", "10.00", "1.25x", "2.00x", "5.00",
                                       "0.50x", "1.00x", "0.50x"]
    assert row("pool", "1 thread")[-3:] == ["only", "in", "A"]
    assert row("relu", "1 thread")[-3:] == ["only", "in", "B"]
    assert any(line.startswith("2 threads: only in A") for line in out)
    assert any(line.startswith("unconfigured: only in B") for line in out)
    assert row("conv", "2 threads")[2:5] == ["6.00", "1.20x", "1.50x"]
    assert row("mnist cnnkit", "memory of one training step")[2:6] == ["20.0", "10.0", "0.50x",
                                                                      "12.0"]
    header = next(line for line in out if line.startswith("case "))
    assert header.split() == ["case", "pass", "A", "ck", "ms", "A", "ck/NCHW", "A", "ck/CL",
                              "B", "ck", "ms", "B", "ck/NCHW", "B", "ck/CL", "ck", "B/A"]
    assert len(row("conv", "1 thread")) == 9
    same = main(["--compare", _write(tmp_path, "a.json", a), _write(tmp_path, "a2.json", a)])
    assert same == 0 and "A and B: the same CPU (Intel(R) Xeon(R) Processor) and BLAS " \
        "(OpenBLAS 0.3.31, core type SkylakeX)" in capsys.readouterr().out


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    ("", "empty, not JSON"),
    ('{"schema": 2,', "not JSON (Expecting"),
    (b"\xff\xfe{}", "not JSON (not UTF-8 text)"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("[1, 2]", "not a benchmark result: the JSON is a list, not an object"),
    ('{"cpu": "x"}', "not a benchmark result: no 'schema' and 'runs'"),
    ('{"schema": 1, "runs": []}', "a result of schema 1; --compare reads schema 2"),
    ('{"schema": 2, "runs": {}}', "runs is an object, not a list"),
    ('{"schema": 2, "runs": [{"name": "1 thread", "rows": [{"case": "c", "pass": "fwd", '
     '"ms": {"cnnkit": "fast"}, "ratio": {}}]}]}', "runs[0].rows[0].ms.cnnkit is text"),
    ('{"schema": 2, "runs": [{"name": "1 thread", "rows": [{"case": "c", "pass": "fwd", '
     '"ms": {"cnnkit": -1}, "ratio": {"nchw": NaN}}]}]}', "ms.cnnkit is -1, not a time"),
    ('{"schema": 2, "runs": [], "machine": {"blas": {"core_type": ["Zen"]}}}',
     "machine.blas.core_type is a list, not text"),
    ('{"schema": 2, "runs": [], "memory": [{"net": "mnist"}]}', "memory[0].framework is null"),
])
def test_compare_refuses_a_bad_file_in_one_line(tmp_path, capsys, content, problem):
    from benchmarks.__main__ import main

    good = _write(tmp_path, "good.json", _result())
    bad = str(tmp_path / "bad.json")
    if isinstance(content, bytes):
        (tmp_path / "bad.json").write_bytes(content)
    elif content is not None:
        _write(tmp_path, "bad.json", content)
    for files in ([bad, good], [good, bad]):
        assert main(["--compare", *files]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1, captured.err
        assert captured.err.startswith(f"python -m benchmarks --compare: {bad}: "), captured.err
        assert problem in captured.err
    assert main(["--compare", str(tmp_path), good]) == 2
    assert "a folder, not a result file" in capsys.readouterr().err


def test_compare_imports_no_torch_and_takes_no_other_option(tmp_path):
    import subprocess
    import sys

    a = _write(tmp_path, "a.json", _result())
    code = ("import sys; from benchmarks.__main__ import main; "
            f"assert main(['--comp', {a!r}, {a!r}]) == 0; "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=memory.ROOT)
    assert done.returncode == 0, done.stderr
    assert "ck B/A" in done.stdout
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--compare", a, a, "--quick"],
                          capture_output=True, text=True, cwd=memory.ROOT)
    assert done.returncode == 2 and "takes no other option: --quick" in done.stderr
