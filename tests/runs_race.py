"""The worker of tests/test_runs.py's lock race, in a module of its own so that a spawned child
imports cnnkit.runs and nothing heavier.

Each worker claims the same run folders as the others, one trial at a time: a barrier starts
every claim of a trial at once, and a worker holds what it got until every worker has tried and
the test has looked at the lock.
"""

import os

from cnnkit.runs import RunFolderError, claim_run_folder


def claim_together(folders, barrier, results):
    for folder in folders:
        barrier.wait()                      # every worker claims at the same moment
        try:
            claimed = claim_run_folder(None, None, "unused", resume=folder)
        except RunFolderError:
            claimed = None
        results.put((str(folder), os.getpid(), claimed is not None))
        barrier.wait()                      # every worker has tried, the winner still holds
        barrier.wait()                      # the test has read the lock in place
        if claimed is not None:
            claimed.release()
