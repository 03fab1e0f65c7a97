"""Running commands on MPI ranks from a test: ``mpiexec`` beside the test's Python (the
``mpich`` wheel installs it in the venv). Without mpi4py or mpiexec the tests skip locally and
fail under CI, where the test extras install both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import require

ROOT = Path(__file__).resolve().parents[2]


def mpiexec() -> str:
    require("mpi4py")
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("mpiexec is required under CI (the mpich wheel of the test extras)")
        pytest.skip("no mpiexec (pip install -e \".[mpi]\")")
    return found


def environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"),
                                         env.get("PYTHONPATH", "")])
    env.pop("CNNKIT_DEBUG", None)
    return env


def run(ranks: int, args: list[str], *, cwd=None, timeout: float = 120):
    """``mpiexec -n ranks python ARGS``; returns (CompletedProcess, seconds)."""
    start = time.perf_counter()
    done = subprocess.run([mpiexec(), "-n", str(ranks), sys.executable, *args], cwd=cwd,
                          env=environment(), capture_output=True, text=True, timeout=timeout)
    return done, time.perf_counter() - start


def cnnkit(args: list[str], *, cwd=None, timeout: float = 180):
    """``python -m cnnkit.cli ARGS`` in a plain process (``--workers`` starts the ranks)."""
    mpiexec()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cnnkit.cli", *args], cwd=cwd,
                          env=environment(), capture_output=True, text=True, timeout=timeout)
    return done, time.perf_counter() - start


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]
