"""keep_freed_memory: large per-frame buffers stop costing fresh pages (counted, not timed)."""
import os
import subprocess
import sys

import pytest

# A child process allocates, fills and frees an 8 MB buffer per "frame", as the node does with
# its labels message, and prints the minor page faults of the frames after the first few.
# "thread": the frames run in a thread whose own first heap is already full of long-lived
# buffers, as the node's inference thread's can be. "thresholds": only the two thresholds are
# set (what the node did before it also limited malloc to one arena).
CHILD = """
import ctypes, resource, sys, threading
from pisr_ros import allocator
mode, where = sys.argv[1], sys.argv[2]
if mode == "tuned":
    print(allocator.keep_freed_memory(), file=sys.stderr)
elif mode == "thresholds":
    mallopt = ctypes.CDLL(None).mallopt
    mallopt(allocator._M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD)
    mallopt(allocator._M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD)
import numpy as np
def frame():
    ids = np.full((1024, 2048), 7, np.int32)
    return len(b"".join([b"head", ids.tobytes()]))
def frames(out):
    hold = [bytearray(1 << 20) for _ in range(60)] if where == "thread" else []
    for _ in range(3):
        frame()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(20):
        frame()
    out.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
out = []
if where == "thread":
    worker = threading.Thread(target=frames, args=(out,))
    worker.start()
    worker.join()
else:
    frames(out)
print(out[0])
"""
# 20 frames write ~16 MB each: 81,920 pages when every page is fresh.
ALL_FRESH = 20 * 2 * (1024 * 2048 * 4) // 4096

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")


def _faults(mode: str, where: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", CHILD, mode, where], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    if "not glibc" in done.stderr:
        pytest.skip(done.stderr.strip())
    return int(done.stdout.strip()), done.stderr


def test_reused_buffers_fault_far_less():
    plain, _ = _faults("plain", "main")
    tuned, said = _faults("tuned", "main")
    assert "reused from the heap" in said
    assert plain > ALL_FRESH // 2
    assert tuned < ALL_FRESH // 50, (tuned, plain)


def test_a_thread_with_a_full_heap_reuses_too():
    # Thresholds alone: the thread's frames go to a fresh heap that is unmapped again each time.
    assert _faults("thresholds", "thread")[0] > ALL_FRESH // 2
    assert _faults("tuned", "thread")[0] < ALL_FRESH // 50


def test_environment_settings_are_left_alone(monkeypatch):
    from pisr_ros.allocator import keep_freed_memory

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert keep_freed_memory() == "malloc: left as set in the environment"
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
    assert keep_freed_memory() == "malloc: left as set in the environment"
