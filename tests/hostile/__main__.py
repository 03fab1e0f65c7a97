"""The hostile-input exercise: ``python -m tests.hostile [--json PATH] [--only WORD]``.

Builds several hundred bad inputs (specs, option values, checkpoint files, data files and
folders, images, run folders) in a temporary folder and runs each through the ``cnnkit`` command
line in a child process limited to 6 GiB of address space and a time bound. Each outcome is
classified:

    clean      exit 0 with output, or a non-zero exit with one error line (a spec error may add
               the spec and a caret; argparse adds its usage lines)
    traceback  a Python traceback on stderr
    hang       still running at the time bound
    killed     ended by a signal (the kernel's out-of-memory killer, a crash)
    internal   one line, but the error boundary's "internal error": an exception nobody expected
    unbudgeted one line, but "out of memory": an allocation the budget did not foresee
    messy      a non-zero exit whose error is not one line, or no error line at all

and the counts are printed as a table (tried / clean / defects), with every defect listed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .cases import build_cases

LIMIT = 6 * 2 ** 30


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def classify(code: int | None, out: str, err: str) -> str:
    if code is None:
        return "hang"
    if code < 0:
        return "killed"
    if "Traceback" in err:
        return "traceback"
    if ": error: internal error" in err:     # caught by the boundary, but a bug all the same
        return "internal"
    if ": error: out of memory" in err:      # caught, but allocated past what was estimated
        return "unbudgeted"
    if code == 0:
        return "clean"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    if len(errors) != 1:
        return "messy" if not (code == 1 and "FAIL" in out) else "clean"
    first = lines.index(errors[0])
    after = lines[first + 1:]
    if ": error: spec:" in errors[0] and len(after) == 2:
        return "clean"
    if errors[0].startswith("cnnkit") and (not after) and all(
            line.startswith(("usage:", " ")) for line in lines[:first]):
        return "clean"
    return "messy"


def run_case(argv, cwd, timeout, env) -> tuple[str, float, str]:
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "cnnkit.cli", *argv], capture_output=True,
                              text=True, timeout=timeout, cwd=cwd, preexec_fn=_limit, env=env)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as expired:
        code = None
        out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else ""
        err = expired.stderr.decode() if isinstance(expired.stderr, bytes) else ""
    return classify(code, out, err), time.perf_counter() - start, (err or out)[-400:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hostile")
    parser.add_argument("--json", help="write every case and its outcome here")
    parser.add_argument("--only", help="run the cases whose group or name contains this")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cnnkit-hostile-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "CNNKIT_CACHE": str(tmp / "cache")}
        cases = build_cases(tmp)
        if args.only:
            cases = [c for c in cases if args.only in c[0] or args.only in c[1]]
        results, counts = [], {}
        with ThreadPoolExecutor(args.jobs) as pool:       # each case is its own process
            futures = [pool.submit(run_case, command, tmp, args.timeout, env)
                       for _, _, command in cases]
            for i, ((group, name, command), future) in enumerate(zip(cases, futures), 1):
                outcome, seconds, tail = future.result()
                results.append({"group": group, "name": name, "argv": command,
                                "outcome": outcome, "seconds": round(seconds, 2), "tail": tail})
                counts.setdefault(group, {}).setdefault(outcome, 0)
                counts[group][outcome] += 1
                mark = "." if outcome == "clean" else outcome[0].upper()
                print(mark, end="" if i % 80 else "\n", flush=True)
        print()
    kinds = ["clean", "traceback", "internal", "unbudgeted", "hang", "killed", "messy"]
    print(f"{'group':<14}{'tried':>7}" + "".join(f"{k:>11}" for k in kinds))
    for group, c in counts.items():
        print(f"{group:<14}{sum(c.values()):>7}" + "".join(f"{c.get(k, 0):>11}" for k in kinds))
    total = {k: sum(c.get(k, 0) for c in counts.values()) for k in kinds}
    print(f"{'all':<14}{len(results):>7}" + "".join(f"{total[k]:>11}" for k in kinds))
    defects = [r for r in results if r["outcome"] != "clean"]
    for r in defects:
        print(f"\n{r['outcome']}: {r['group']}/{r['name']}: {' '.join(r['argv'])[:200]}\n"
              f"  {r['tail'].strip().splitlines()[-1] if r['tail'].strip() else ''}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
