"""``python -m benchmarks --compare A.json B.json``: two result files side by side.

It times nothing and imports neither PyTorch nor NumPy: it reads two JSON files that ``python -m
benchmarks`` wrote (schema 2, :func:`benchmarks.suite.run`) and prints

- a header per file: the date, duration and command; the CPU model and NumPy's BLAS (library,
  version and core type: the kernel set OpenBLAS chose for the CPU, threadpoolctl's
  "architecture", e.g. SkylakeX, Haswell, Zen, SapphireRapids); each configuration's thread
  counts; the library versions; the repeats, and whether it was a ``--quick`` smoke run. Then one
  line saying whether the two ran on the same CPU with the same BLAS. Results from different
  machines compare: each ratio is cnnkit against PyTorch on one machine, so the ratios compare
  across them; cnnkit's times and B/A then measure the machines as well as the code, which the
  line says;
- per configuration (matched by name: ``unconfigured``, ``1 thread``, ``2 threads``,
  ``defaults``), one table: per case and pass, cnnkit's ms and its ratios to PyTorch NCHW
  (``ck/NCHW``) and channels_last (``ck/CL``) in A, the same in B, and ``ck B/A``, cnnkit's ms in
  B over its ms in A (below 1: faster in B). A case or a configuration in one file only is listed
  with "only in A" or "only in B";
- the memory of a training step (RSS peak growth, tracemalloc peak) in A and in B, when either
  file measured it.

A file that is missing, unreadable, not JSON or not such a result is one line naming the file and
the problem (:class:`ResultFileError`), with exit status 2; ``main`` never shows a traceback for
a bad file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from .machine import blas_label, blas_summary, measured_on

__all__ = ["ResultFileError", "load_result", "compare_lines", "main"]

SCHEMA = 2
SIDES = ("cnnkit", "torch_nchw", "torch_channels_last")
LAYOUTS = ("nchw", "channels_last")
COLUMNS = (("case", 16), ("pass", 9), ("A ck ms", 9), ("A ck/NCHW", 9), ("A ck/CL", 7),
           ("B ck ms", 9), ("B ck/NCHW", 9), ("B ck/CL", 7), ("ck B/A", 7))


class ResultFileError(Exception):
    """A file that cannot be compared; ``str(err)`` is one line naming the file and why."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")


# ----------------------------------------------------------------------------- reading

def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false",
            type(None): "null"}.get(type(value), "a number")


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _check(value, expected: str, where: str, problems: list, *, optional: bool = False):
    """Append a problem unless ``value`` is ``expected`` ("object", "list", "text", "number",
    "time": a number > 0) or, when ``optional``, null. Returns whether it is (null counts)."""
    if value is None and optional:
        return True
    ok = {"object": isinstance(value, dict), "list": isinstance(value, list),
          "text": isinstance(value, str), "number": _is_number(value),
          "time": _is_number(value) and value > 0}[expected]
    if not ok:
        wanted = {"object": "an object", "list": "a list", "text": "text",
                  "number": "a finite number", "time": "a time in ms (a number > 0)"}[expected]
        got = (repr(value) if _is_number(value) or isinstance(value, bool)
               else _kind(value))
        problems.append(f"{where} is {got}, not {wanted}")
    return ok


def _check_row(row, where: str, problems: list) -> None:
    if not _check(row, "object", where, problems):
        return
    for key in ("case", "pass"):
        _check(row.get(key), "text", f"{where}.{key}", problems)
    if _check(row.get("ms"), "object", f"{where}.ms", problems):
        for side in SIDES:
            _check(row["ms"].get(side), "time", f"{where}.ms.{side}", problems, optional=True)
    if _check(row.get("ratio"), "object", f"{where}.ratio", problems):
        for layout in LAYOUTS:
            _check(row["ratio"].get(layout), "time", f"{where}.ratio.{layout}", problems,
                   optional=True)


def _check_machine(machine, problems: list) -> None:
    if not _check(machine, "object", "machine", problems, optional=True) or machine is None:
        return
    _check(machine.get("cpu_model"), "text", "machine.cpu_model", problems, optional=True)
    _check(machine.get("logical_cpus"), "number", "machine.logical_cpus", problems,
           optional=True)
    for key in ("numpy", "torch", "cnnkit", "python"):
        _check(machine.get(key), "text", f"machine.{key}", problems, optional=True)
    if _check(machine.get("blas"), "object", "machine.blas", problems, optional=True) \
            and machine.get("blas") is not None:
        for key, value in machine["blas"].items():
            _check(value, "text", f"machine.blas.{key}", problems, optional=True)
    pools = machine.get("numpy_blas")
    if _check(pools, "list", "machine.numpy_blas", problems, optional=True) and pools:
        for i, pool in enumerate(pools):
            if _check(pool, "object", f"machine.numpy_blas[{i}]", problems):
                for key in ("internal_api", "version", "architecture", "threading_layer"):
                    _check(pool.get(key), "text", f"machine.numpy_blas[{i}].{key}", problems,
                           optional=True)


def _check_threads(threads, where: str, problems: list) -> None:
    if _check(threads, "object", where, problems, optional=True) and threads is not None:
        for key in ("cnnkit", "torch"):
            _check(threads.get(key), "number", f"{where}.{key}", problems, optional=True)
        blas = threads.get("numpy_blas")
        if not (blas is None or _is_number(blas)
                or isinstance(blas, list) and all(_is_number(b) for b in blas)):
            problems.append(f"{where}.numpy_blas is {_kind(blas)}, not a thread count")


def _check_result(data) -> list[str]:
    """What in ``data`` is not as ``python -m benchmarks`` writes it (empty: fine)."""
    if not isinstance(data, dict):
        return [f"not a benchmark result: the JSON is {_kind(data)}, not an object"]
    if "schema" not in data or "runs" not in data:
        missing = " and ".join(repr(k) for k in ("schema", "runs") if k not in data)
        return [f"not a benchmark result: no {missing} (python -m benchmarks writes both)"]
    if data["schema"] != SCHEMA:
        return [f"a result of schema {data['schema']!r}; --compare reads schema {SCHEMA} (rerun "
                f"python -m benchmarks to get one)"]
    problems: list[str] = []
    for key in ("created", "command"):
        _check(data.get(key), "text", key, problems, optional=True)
    _check(data.get("duration_s"), "number", "duration_s", problems, optional=True)
    settings = data.get("settings")
    if _check(settings, "object", "settings", problems, optional=True) and settings:
        for key in ("repeats", "warmup", "budget"):
            _check(settings.get(key), "number", f"settings.{key}", problems, optional=True)
    _check_machine(data.get("machine"), problems)
    _check_threads(data.get("threads_at_start"), "threads_at_start", problems)
    if _check(data["runs"], "list", "runs", problems):
        for i, run in enumerate(data["runs"]):
            where = f"runs[{i}]"
            if not _check(run, "object", where, problems):
                continue
            _check(run.get("name"), "text", f"{where}.name", problems)
            _check_threads(run.get("threads"), f"{where}.threads", problems)
            if _check(run.get("rows"), "list", f"{where}.rows", problems):
                for j, row in enumerate(run["rows"]):
                    _check_row(row, f"{where}.rows[{j}]", problems)
    memory = data.get("memory")
    if _check(memory, "list", "memory", problems, optional=True) and memory:
        for i, entry in enumerate(memory):
            where = f"memory[{i}]"
            if not _check(entry, "object", where, problems):
                continue
            for key in ("net", "framework", "layout"):
                _check(entry.get(key), "text", f"{where}.{key}", problems)
            for key in ("rss_peak_delta_mib", "tracemalloc_peak_mib"):
                _check(entry.get(key), "number", f"{where}.{key}", problems, optional=True)
    return [f"not a benchmark result: {p}" for p in problems]


def load_result(path) -> dict:
    """The parsed result file at ``path``; raises :class:`ResultFileError` (one line) if it is
    missing, unreadable, not JSON or not a result of ``python -m benchmarks`` (schema 2)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ResultFileError(path, "no such file") from None
    except IsADirectoryError:
        raise ResultFileError(path, "a folder, not a result file") from None
    except UnicodeDecodeError:
        raise ResultFileError(path, "not JSON (not UTF-8 text)") from None
    except OSError as err:
        raise ResultFileError(path, f"cannot be read ({err.strerror or err})") from None
    if not text.strip():
        raise ResultFileError(path, "empty, not JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ResultFileError(path, f"not JSON ({err.msg} at line {err.lineno}, column "
                                    f"{err.colno})") from None
    except RecursionError:
        raise ResultFileError(path, "not JSON that can be read (nested too deeply)") from None
    except ValueError as err:             # Python reads no integer of over 4,300 digits
        why = "a number with too many digits" if "digits" in str(err) else str(err)
        raise ResultFileError(path, f"not JSON that can be read ({why})") from None
    problems = _check_result(data)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ResultFileError(path, problems[0] + more)
    return data


# ----------------------------------------------------------------------------- printing

def _num(value, fmt: str, width: int, suffix: str = "") -> str:
    text = "-" if value is None else f"{value:{fmt}}{suffix}"
    return f"{text:>{width}}"


def _threads(threads) -> str:
    if not threads:
        return "counts not recorded"
    return (f"cnnkit {threads.get('cnnkit')}, NumPy BLAS {threads.get('numpy_blas')}, "
            f"PyTorch {threads.get('torch')}")


def _blas(machine: dict) -> dict:
    return machine.get("blas") or blas_summary(machine.get("numpy_blas") or [])


def _header(label: str, path, data: dict) -> list[str]:
    machine = data.get("machine") or {}
    settings = data.get("settings") or {}
    blas = _blas(machine)
    written = " ".join(part for part in (
        data.get("created") or "at an unrecorded date",
        f"in {data['duration_s']:g} s" if data.get("duration_s") is not None else "")
        if part)
    runs = "; ".join(f"{run['name']}: {_threads(run.get('threads'))}" for run in data["runs"])
    versions = ", ".join(f"{name} {machine[key]}" for name, key in (
        ("cnnkit", "cnnkit"), ("NumPy", "numpy"), ("PyTorch", "torch"), ("Python", "python"))
        if machine.get(key))
    timed = (f"median of up to {settings['repeats']} calls after {settings.get('warmup')} "
             f"warm-up, at most {settings.get('budget')} s of samples"
             if settings.get("repeats") is not None else "not recorded")
    return [
        f"{label}: {path}",
        f"  written {written} by: {data.get('command') or 'a command not recorded'}",
        f"  measured on: {measured_on(machine)}"
        + (f" ({blas['threading_layer']})" if blas.get("threading_layer") else ""),
        f"  threads: {runs or 'no configuration measured'}",
        f"  versions: {versions or 'not recorded'}",
        f"  timing: {timed}"
        + ("; --quick: a smoke run, not a measurement" if settings.get("quick") else ""),
    ]


def _sameness(a: dict, b: dict) -> str:
    ma, mb = a.get("machine") or {}, b.get("machine") or {}
    cpu = (ma.get("cpu_model"), mb.get("cpu_model"))
    blas_a, blas_b = _blas(ma), _blas(mb)
    core = (blas_a.get("core_type"), blas_b.get("core_type"))
    library = tuple(f"{blas.get('library')} {blas.get('version')}" for blas in (blas_a, blas_b))
    differ = [f"{what} (A: {x or 'not recorded'}; B: {y or 'not recorded'})"
              for what, (x, y) in (("CPUs", cpu), ("BLAS core types", core),
                                   ("BLAS libraries", library)) if x != y]
    if not differ:
        return (f"A and B: the same CPU ({cpu[0] or 'not recorded'}) and BLAS "
                f"({blas_label(ma)})")
    return ("A and B differ: " + "; ".join(differ) + ". Each ratio compares cnnkit with "
            "PyTorch on one machine, so the ratios compare; cnnkit's ms and B/A measure the "
            "machines as well as the code")


def _table_header() -> str:
    return "  ".join(f"{name:<{w}}" if i < 2 else f"{name:>{w}}"
                     for i, (name, w) in enumerate(COLUMNS))


def _side(row) -> list:
    if row is None:
        return [None, None, None]
    return [row["ms"].get("cnnkit"), row["ratio"].get("nchw"), row["ratio"].get("channels_last")]


def _row_line(case: str, pass_: str, a, b) -> str:
    widths = [w for _, w in COLUMNS]
    cells = [f"{case:<{widths[0]}}", f"{pass_:<{widths[1]}}"]
    for i, (value, suffix) in enumerate(zip(_side(a) + _side(b), ("", "x", "x") * 2)):
        cells.append(_num(value, ".2f", widths[2 + i], suffix))
    change = (b["ms"]["cnnkit"] / a["ms"]["cnnkit"]
              if a and b and a["ms"].get("cnnkit") and b["ms"].get("cnnkit") else None)
    cells.append(_num(change, ".2f", widths[8], "x"))
    note = "   only in A" if b is None else "   only in B" if a is None else ""
    return "  ".join(cells) + note


def _keyed(items, key) -> dict:
    """First item per key, in order."""
    out: dict = {}
    for item in items:
        out.setdefault(key(item), item)
    return out


def _configuration(name: str, run_a, run_b) -> list[str]:
    if run_a is None or run_b is None:
        which, run = ("A", run_a) if run_b is None else ("B", run_b)
        title = f"{name}: only in {which} ({_threads(run.get('threads'))})"
    else:
        ta, tb = _threads(run_a.get("threads")), _threads(run_b.get("threads"))
        title = f"{name}: A {ta}; B " + ("the same" if ta == tb else tb)
    rows_a = _keyed(run_a["rows"] if run_a else [], lambda r: (r["case"], r["pass"]))
    rows_b = _keyed(run_b["rows"] if run_b else [], lambda r: (r["case"], r["pass"]))
    lines = ["", title, _table_header()]
    for key in [*rows_a, *(k for k in rows_b if k not in rows_a)]:
        lines.append(_row_line(*key, rows_a.get(key), rows_b.get(key)))
    return lines


def _memory(a: dict, b: dict) -> list[str]:
    def key(m):
        return (m["net"], m["framework"], m["layout"])

    mem_a, mem_b = _keyed(a.get("memory") or [], key), _keyed(b.get("memory") or [], key)
    if not mem_a and not mem_b:
        return []
    lines = ["", "memory of one training step (MiB)",
             f"{'net, framework':<28}{'A RSS peak':>12}{'B RSS peak':>12}{'B/A':>8}"
             f"{'A tracemalloc':>15}{'B tracemalloc':>15}"]
    for k in [*mem_a, *(k for k in mem_b if k not in mem_a)]:
        ma, mb = mem_a.get(k, {}), mem_b.get(k, {})
        ra, rb = ma.get("rss_peak_delta_mib"), mb.get("rss_peak_delta_mib")
        label = f"{k[0]} {k[1]}" + (f" {k[2]}" if k[1] == "torch" else "")
        note = "   only in A" if not mb else "   only in B" if not ma else ""
        lines.append(f"{label:<28}{_num(ra, '.1f', 12)}{_num(rb, '.1f', 12)}"
                     f"{_num(rb / ra if ra and rb is not None else None, '.2f', 8, 'x')}"
                     f"{_num(ma.get('tracemalloc_peak_mib'), '.1f', 15)}"
                     f"{_num(mb.get('tracemalloc_peak_mib'), '.1f', 15)}{note}")
    return lines


def compare_lines(a: dict, b: dict, path_a="A", path_b="B") -> list[str]:
    """The printed comparison of two loaded results (see the module docstring)."""
    lines = [*_header("A", path_a, a), *_header("B", path_b, b), _sameness(a, b), "",
             "ck = cnnkit; ck/NCHW, ck/CL = cnnkit ms / PyTorch ms (NCHW, channels_last) in that "
             "file (above 1: cnnkit slower); ck B/A = cnnkit's ms in B / in A (below 1: faster "
             "in B)"]
    runs_a = _keyed(a["runs"], lambda r: r["name"])
    runs_b = _keyed(b["runs"], lambda r: r["name"])
    for name in [*runs_a, *(n for n in runs_b if n not in runs_a)]:
        lines += _configuration(name, runs_a.get(name), runs_b.get(name))
    return lines + _memory(a, b)


def main(argv=None) -> int:
    """``python -m benchmarks --compare A.json B.json``; exit status 2 for a file that cannot
    be compared (one line on stderr) or a wrong command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Print two result files of python -m benchmarks side by side; time nothing.")
    parser.add_argument("--compare", nargs=2, required=True, metavar=("A.json", "B.json"))
    args, others = parser.parse_known_args(argv)
    if others:
        parser.error(f"--compare times nothing and takes no other option: {' '.join(others)}")
    try:
        a, b = (load_result(path) for path in args.compare)
    except ResultFileError as err:
        print(f"python -m benchmarks --compare: {err}", file=sys.stderr)
        return 2
    try:
        for line in compare_lines(a, b, *args.compare):
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:                  # the reader stopped (| head): no traceback either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
