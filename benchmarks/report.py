"""The report: one row per timed comparison, printed as tables and written as JSON.

A row holds the median times of cnnkit, PyTorch NCHW and PyTorch channels_last, the ratios
``cnnkit / torch`` (above 1: cnnkit is slower by that factor), and, for the GEMM-shaped kernels,
the rate in GFLOP/s as a fraction of the measured SGEMM peak; an inference row adds images/s.
Each thread configuration has its own rows and its own table.

A speed-up row (:func:`speedup_rows`) pairs one case and pass at a low and a high thread count
(1 and all cores): cnnkit's two times, each side's speed-up ``ms at low / ms at high`` (2.0 on
2 threads: the work split perfectly; 1.0: the extra threads did nothing), and the ratios
``cnnkit / torch`` at the high count. It shows whether cnnkit gains from threads as PyTorch does,
which a ratio at one count cannot. The printed tables and the JSON come from the same rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .sgemm import fraction_of_peak, gflops

__all__ = ["SIDES", "make_row", "table_header", "format_row", "throughput_table",
           "threads_label", "speedup_rows", "speedup_table", "memory_table", "write_json"]

SIDES = ("cnnkit", "torch_nchw", "torch_channels_last")


def make_row(case: str, pass_: str, group: str, description: str, timings: dict, *,
             flops: int | None = None, batch: int | None = None,
             peak_gflops: float | None = None) -> dict:
    """A row from ``timings`` (side -> Timing or None); see the module docstring."""
    ms = {side: None if timings.get(side) is None else timings[side].median_ms for side in SIDES}
    row = {
        "case": case, "pass": pass_, "group": group, "description": description,
        "timings": {side: None if timings.get(side) is None else timings[side].to_dict()
                    for side in SIDES},
        "ms": ms,
        "ratio": {layout: (ms["cnnkit"] / ms[f"torch_{layout}"]
                           if ms["cnnkit"] and ms[f"torch_{layout}"] else None)
                  for layout in ("nchw", "channels_last")},
    }
    if flops is not None:
        row["flops"] = flops
        row["gflops"] = {side: gflops(flops, ms[side]) for side in SIDES}
        row["fraction_of_sgemm_peak"] = {side: fraction_of_peak(flops, ms[side], peak_gflops)
                                         for side in SIDES}
    if batch is not None:
        row["batch"] = batch
        row["images_per_s"] = {side: None if not ms[side] else batch / (ms[side] * 1e-3)
                               for side in SIDES}
    return row


def _num(value, fmt: str, width: int, suffix: str = "") -> str:
    """``value`` formatted with ``fmt`` and ``suffix``, right-aligned; "-" for None."""
    text = "-" if value is None else f"{value:{fmt}}{suffix}"
    return f"{text:>{width}}"


_COLUMNS = (("case", 16), ("pass", 9), ("cnnkit ms", 10), ("NCHW ms", 9), ("CL ms", 9),
            ("ck/NCHW", 8), ("ck/CL", 7), ("%pk ck", 7), ("%pk NCHW", 9), ("%pk CL", 7))


def table_header() -> str:
    """The header of the timing table (ck = cnnkit, CL = channels_last, %pk = % of SGEMM)."""
    return "  ".join(f"{name:<{w}}" if i < 2 else f"{name:>{w}}"
                     for i, (name, w) in enumerate(_COLUMNS))


def format_row(row: dict) -> str:
    """One line of the timing table."""
    widths = [w for _, w in _COLUMNS]
    ms, ratio = row["ms"], row["ratio"]
    peak = row.get("fraction_of_sgemm_peak", {})
    cells = [f"{row['case']:<{widths[0]}}", f"{row['pass']:<{widths[1]}}",
             _num(ms["cnnkit"], ".2f", widths[2]), _num(ms["torch_nchw"], ".2f", widths[3]),
             _num(ms["torch_channels_last"], ".2f", widths[4]),
             _num(ratio["nchw"], ".2f", widths[5], "x"),
             _num(ratio["channels_last"], ".2f", widths[6], "x")]
    for side, w in zip(SIDES, widths[7:]):
        value = peak.get(side)
        cells.append(_num(None if value is None else 100 * value, ".0f", w, "%"))
    return "  ".join(cells)


def throughput_table(rows: list[dict]) -> list[str]:
    """Lines of the inference table: images/s per side and batch."""
    lines = [f"{'inference, eval mode':<28}{'cnnkit img/s':>14}{'NCHW img/s':>14}"
             f"{'CL img/s':>14}{'ck/NCHW':>10}"]
    for row in rows:
        ips = row["images_per_s"]
        lines.append(f"{row['case'] + ' (batch ' + str(row['batch']) + ')':<28}"
                     f"{_num(ips['cnnkit'], ',.0f', 14)}{_num(ips['torch_nchw'], ',.0f', 14)}"
                     f"{_num(ips['torch_channels_last'], ',.0f', 14)}"
                     f"{_num(row['ratio']['nchw'], '.2f', 10, 'x')}")
    return lines


def threads_label(threads: dict) -> str:
    """The counts in force, as the table headers name them: "cnnkit 2, NumPy BLAS 2, PyTorch 2"."""
    return (f"cnnkit {threads.get('cnnkit')}, NumPy BLAS {threads.get('numpy_blas')}, "
            f"PyTorch {threads.get('torch')}")


def _speedup(ms_low, ms_high):
    return ms_low / ms_high if ms_low and ms_high else None


def speedup_rows(low_rows: list[dict], high_rows: list[dict], low: int, high: int) -> list[dict]:
    """One speed-up row per (case, pass) measured at both ``low`` and ``high`` threads, in the
    order of ``low_rows`` (see the module docstring)."""
    high_by_key = {(r["case"], r["pass"]): r for r in high_rows}
    result = []
    for lo in low_rows:
        hi = high_by_key.get((lo["case"], lo["pass"]))
        if hi is None:
            continue
        result.append({
            "case": lo["case"], "pass": lo["pass"], "group": lo["group"],
            "from_threads": low, "to_threads": high,
            "cnnkit_ms": [lo["ms"]["cnnkit"], hi["ms"]["cnnkit"]],
            "speedup": {side: _speedup(lo["ms"][side], hi["ms"][side]) for side in SIDES},
            "ratio_at_to_threads": dict(hi["ratio"]),
        })
    return result


def speedup_table(speedups: list[dict], low: int, high: int) -> list[str]:
    """Lines of the speed-up table from :func:`speedup_rows` (header first)."""
    arrow = f"{low}->{high}"
    columns = (("case", 16), ("pass", 9), (f"ck {low}t ms", 10), (f"ck {high}t ms", 10),
               (f"ck {arrow}", 9), (f"NCHW {arrow}", 10), (f"CL {arrow}", 9),
               (f"ck/NCHW@{high}", 10), (f"ck/CL@{high}", 8))
    widths = [max(w, len(name)) for name, w in columns]
    lines = ["  ".join(f"{name:<{w}}" if i < 2 else f"{name:>{w}}"
                       for i, ((name, _), w) in enumerate(zip(columns, widths)))]
    for s in speedups:
        ms, up, ratio = s["cnnkit_ms"], s["speedup"], s["ratio_at_to_threads"]
        lines.append("  ".join([
            f"{s['case']:<{widths[0]}}", f"{s['pass']:<{widths[1]}}",
            _num(ms[0], ".2f", widths[2]), _num(ms[1], ".2f", widths[3]),
            _num(up["cnnkit"], ".2f", widths[4], "x"),
            _num(up["torch_nchw"], ".2f", widths[5], "x"),
            _num(up["torch_channels_last"], ".2f", widths[6], "x"),
            _num(ratio["nchw"], ".2f", widths[7], "x"),
            _num(ratio["channels_last"], ".2f", widths[8], "x")]))
    return lines


def memory_table(results: list[dict]) -> list[str]:
    """Lines of the memory table, one per (net, framework, layout) measurement."""
    lines = [f"{'one training step':<32}{'RSS peak delta':>16}{'tracemalloc peak':>18}"
             f"{'RSS before':>12}   (MiB)"]
    for r in results:
        label = f"{r['net']} {r['framework']}" + (f" {r['layout']}" if r["framework"] == "torch"
                                                  else "")
        line = (f"{label:<32}{_num(r['rss_peak_delta_mib'], '.1f', 16)}"
                f"{_num(r['tracemalloc_peak_mib'], '.1f', 18)}"
                f"{_num(r['rss_baseline_mib'], '.0f', 12)}")
        lines.append(line + (f"   error: {r['error']}" if r.get("error") else ""))
    return lines


def write_json(path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON to ``path`` (folders made, replaced atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    return path
