"""cnnkit.fit from a Python script run under mpiexec trains data-parallel, as `cnnkit train`
does: every rank returns a Run, rank 0's with the test result, and the weights are one
process's to float32 rounding."""

import json
import subprocess
import sys

import numpy as np

from cnnkit.io import load_checkpoint
from tests.distributed import mpi

SCRIPT = """
import json, sys
import cnnkit
for name in ("r", "again"):      # a second run in the same job takes the same communicator
    run = cnnkit.fit(model="INPUT[1x28x28] -> CONV3-4 -> BN -> RELU -> POOL2 -> FC-10",
                     epochs=1, limit=264, val_size=66, batch_size=66, sync_bn=True,
                     progress=False, out=sys.argv[1], name=name, log=print)
from cnnkit.distributed import active
comm = active()
print("RESULT", json.dumps({"rank": comm.rank if comm else 0, "size": comm.size if comm else 1,
                            "test": run.test, "folder": str(run.folder)}), flush=True)
"""


def _results(stdout: str) -> list[dict]:
    return [json.loads(line.split(" ", 1)[1]) for line in stdout.splitlines()
            if line.startswith("RESULT ")]


def test_fit_under_mpiexec_trains_on_the_ranks_and_rank_0_writes(tmp_path):
    done, _ = mpi.run(2, ["-c", SCRIPT, str(tmp_path / "two")])
    assert done.returncode == 0, done.stderr[-3000:]
    results = sorted(_results(done.stdout), key=lambda r: r["rank"])
    assert [(r["rank"], r["size"]) for r in results] == [(0, 2), (1, 2)]
    assert results[0]["test"]["images"] == 264 and results[1]["test"] is None
    assert done.stdout.count("training ") == 2 and "on 2 ranks" in done.stdout
    assert (tmp_path / "two" / "again" / "model.npz").is_file()
    one = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "one")],
                         env=mpi.environment(), capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = (load_checkpoint(tmp_path / n / "r" / "checkpoint.npz").model_state
            for n in ("one", "two"))
    assert max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a) < 1e-4
