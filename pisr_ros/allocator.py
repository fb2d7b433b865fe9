"""Keep freed memory for reuse: the nodes' per-frame buffers without fresh pages every frame.

Every frame the panoptic node allocates and frees a few buffers of megabytes: the id map at
camera resolution (8 MB for 1024x2048), its serialized message, rclpy's and Fast DDS's copies
of it. glibc's malloc serves such large requests with ``mmap`` and returns them to the kernel on
``free``, so the next frame's buffer starts as untouched pages and each 4 KiB page costs a
fault when first written. On the 2-core development VM, resizing a 512x1024 id map to 1024x2048
and copying it into a message took 10.3 ms that way and 3.8 ms with the settings below (median
of 50 in one process); in the node, publishing the outputs went from 9.4 to 4.9 ms
(docs/panoptic_node.md).

``keep_freed_memory`` raises glibc's mmap threshold, so that these buffers come from the heap,
and its trim threshold, so that freed heap memory stays mapped for the next frame. It also
limits malloc to its main arena: a thread's own arena grows in heaps of at most 64 MiB, and
once its first heap is full each frame's buffers went into a new heap that was unmapped again
when they were freed, in about every second start of the node (seen with strace: a heap
mapped and unmapped per frame, 50,000 page faults/s, publishing at 13-14 ms). Threads started
before the call keep the arenas they have, so the nodes' entry points (``ros/entry.py``) call
it before importing anything that starts threads. The cost is memory that is kept rather than
given back, at most about ``TRIM_THRESHOLD`` beyond what the process is using, and one malloc
lock for all threads (the nodes make few large allocations; small Python objects do not use
malloc's arenas).
"""
from __future__ import annotations

import ctypes
import os

# mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# The largest mmap threshold glibc accepts on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX):
# requests below it (a 1024x2048x3 float32 image is 24 MiB) come from the heap.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 128 * 1024 * 1024
# Set any of these and glibc's own reading of them is left alone.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


def keep_freed_memory() -> str:
    """Tune glibc's malloc as described above: early, before threads start; calling it again
    changes nothing.

    Returns what was done, for the node's log: the settings, or why nothing was changed (not
    glibc, or the user chose malloc settings through the environment).
    """
    if any(name in os.environ for name in _USER_SETTINGS) or "malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return "malloc: left as set in the environment"
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError, TypeError):
        return "malloc: not glibc, left alone"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            and mallopt(_M_ARENA_MAX, 1)):
        return "malloc: mallopt refused the settings, left alone"
    return (f"malloc: buffers under {MMAP_THRESHOLD >> 20} MiB reused from the heap, "
            f"up to {TRIM_THRESHOLD >> 20} MiB of freed memory kept, one arena")
