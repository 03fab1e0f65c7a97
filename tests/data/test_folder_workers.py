"""A folder decoded by worker processes (started with "spawn") from a script without an
``if __name__ == "__main__":`` guard: the workers do not run the script again, and a worker that
dies is one line saying what to do. The workers start from 2 images of 10 per task here, not
4,096 (the module's thresholds, set by each child)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

# the part every child runs first: workers for any folder, on two cores even where there is one
_SMALL = ("import os\n"
          "from cnnkit.data import folder\n"
          "folder._PROCESSES_FROM, folder._CHUNK = 2, 10\n"
          "folder.os.sched_getaffinity = lambda pid: {0, 1}\n")

# a script as a tutorial reader writes it: cnnkit called at its top level, no main guard
_SCRIPT = _SMALL + ("import cnnkit\n"
                    "with open('ran.log', 'a') as log:\n"
                    "    print(os.getpid(), file=log)\n"
                    "source = cnnkit.data.open_source('folder:imgs')\n"
                    "print('opened', len(source.train))\n")


def _images(folder: Path, per_class: int = 15) -> None:
    """Two classes of non-square grey PNGs: three tasks of 10 images for the workers."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(2):
        (folder / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 6), dtype=np.uint8)).save(
                folder / f"c{c}" / f"{i}.png")


def _run(args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(cwd)]),
               CNNKIT_CACHE=str(cwd / "cache"))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("how", [["guardless.py"], ["-m", "guardless"]], ids=["file", "module"])
def test_a_script_without_a_main_guard_is_not_run_again_by_the_workers(tmp_path, how):
    _images(tmp_path / "imgs")
    (tmp_path / "guardless.py").write_text(_SCRIPT)
    done = _run(how, tmp_path)
    assert done.returncode == 0 and done.stdout == "opened 30\n", done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len((tmp_path / "ran.log").read_text().splitlines()) == 1   # the script ran once


def test_a_worker_that_dies_is_one_line_saying_what_to_do(tmp_path):
    _images(tmp_path / "imgs")
    (tmp_path / "dying.py").write_text("import os\n\ndef decode(*args):\n    os._exit(3)\n")
    code = (_SMALL + "import sys, dying\n"
            "folder._decode_range = dying.decode\n"      # what the workers run: they die
            "from cnnkit.cli import main\n"
            "sys.exit(main(['train', '--data', 'folder:imgs', '--epochs', '1', '--no-progress', "
            "'--out', 'runs']))\n")
    done = _run(["-c", code], tmp_path)
    assert done.returncode not in (0, None) and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("cnnkit train: error: decoding imgs: a worker process ended "
                           "abruptly"), line
    assert 'put that code under `if __name__ == "__main__":`' in line
    assert not (tmp_path / "runs").exists()
