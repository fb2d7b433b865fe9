"""keep_freed_memory: large per-frame buffers stop costing fresh pages (counted, not timed)."""
import os
import subprocess
import sys

import pytest

# A child process allocates, fills and frees an 8 MB buffer per "frame", as the node does with
# its labels message, and prints the minor page faults of the frames after the first few.
CHILD = """
import resource, sys
import numpy as np
from pisr_ros.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    print(keep_freed_memory(), file=sys.stderr)
def frame():
    ids = np.full((1024, 2048), 7, np.int32)
    return len(b"".join([b"head", ids.tobytes()]))
for _ in range(3):
    frame()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    frame()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    return int(done.stdout.strip()), done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_reused_buffers_fault_far_less():
    plain, _ = _faults("plain")
    tuned, said = _faults("tuned")
    if "not glibc" in said:
        pytest.skip(said)
    assert "reused from the heap" in said
    # 20 frames of ~16 MB freshly written: thousands of faults with mmap'd buffers.
    assert plain > 2000
    assert tuned < plain / 10, (tuned, plain)


def test_environment_settings_are_left_alone(monkeypatch):
    from pisr_ros.allocator import keep_freed_memory

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert keep_freed_memory() == "malloc: left as set in the environment"
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
    assert keep_freed_memory() == "malloc: left as set in the environment"
