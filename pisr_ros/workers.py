"""How the project starts worker processes (synth and evaluate pools, DataLoader workers)."""
from __future__ import annotations

import multiprocessing

import cv2


def _init_worker() -> None:
    # One process per core already; OpenCV's own threads would only oversubscribe the cores.
    cv2.setNumThreads(1)


def start_context():
    """The multiprocessing context for worker processes (pools, DataLoader workers)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        # Imported once in the server rather than in every worker.
        ctx.set_forkserver_preload(["numpy", "cv2", "pisr_ros.workers"])
        return ctx
    return multiprocessing.get_context("spawn")


def process_pool(workers: int):
    """A pool of ``workers`` processes, started by a fork server where there is one.

    Not plain fork: a caller that has already used OpenCV's thread pool (any large resize, as
    training does before it validates) hands forked children a lock that no thread will ever
    release, and they hang inside cv2. The fork server is a fresh interpreter, so its children
    start clean.
    """
    return start_context().Pool(workers, initializer=_init_worker)
