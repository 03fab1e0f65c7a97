"""cnnkit.allocator: freed blocks are reused instead of faulted in again at every step."""

import os
import platform
import subprocess
import sys

import pytest

from cnnkit import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A step's pattern: three 16 MiB arrays (the size of a CIFAR-size activation) alive at once, then
# freed, 20 times; prints the minor page faults per round. The first kernel call applies the
# thresholds. (With glibc's own, the 48 MiB freed at the heap's top exceed its trim threshold,
# which it raises only to twice the largest block freed, and go back to the system.)
_ROUNDS = """
import resource, numpy as np
from cnnkit import functional as F
F.relu_forward(np.ones((2, 3), np.float32))
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():
    arrays = [np.ones(4 << 20, np.float32) for _ in range(3)]
    return sum(a.sum() for a in arrays)
for _ in range(3):
    step()
before = faults()
for _ in range(20):
    step()
print((faults() - before) / 20)
"""


def _faults_per_round(switch: str) -> float:
    env = {**os.environ, "CNNKIT_KEEP_FREED_MEMORY": switch}
    done = subprocess.run([sys.executable, "-c", _ROUNDS], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_arrays_are_reused_without_page_faults_and_the_switch_turns_it_off():
    pages = 3 * (16 << 20) // 4096                    # 12,288 pages of 4 KiB per round
    kept = _faults_per_round("1")
    assert kept < pages / 20, kept                    # measured: 0
    assert _faults_per_round("0") > pages / 20        # glibc's own: measured 1,006 (huge pages)


def test_a_bad_switch_is_one_line_naming_the_variable(monkeypatch):
    from cnnkit.environment import EnvironmentVariableError

    monkeypatch.setattr(allocator, "_state", None)
    monkeypatch.setenv("CNNKIT_KEEP_FREED_MEMORY", "sometimes")
    with pytest.raises(EnvironmentVariableError, match="CNNKIT_KEEP_FREED_MEMORY.*1 or 0"):
        allocator.keep_freed_memory()
    monkeypatch.setenv("CNNKIT_KEEP_FREED_MEMORY", "off")
    assert allocator.keep_freed_memory() is False
    assert allocator.keep_freed_memory() is False     # decided once per process
