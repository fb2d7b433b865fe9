"""`make demo`, the README's main job (pisr_ros.ros.demo): it ends clean."""
from __future__ import annotations

import threading

from pisr_ros.ros.demo import GridWatcher


def test_grid_watcher_closes_without_a_traceback(monkeypatch):
    # An exception that ends a thread reaches threading.excepthook, which prints the traceback.
    escaped = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    for _ in range(3):  # the spin thread was inside spin_once at shutdown in most runs, not all
        watcher = GridWatcher(64, 32)
        watcher.close()
        assert not watcher.thread.is_alive()
    assert [e.exc_type.__name__ for e in escaped] == []
