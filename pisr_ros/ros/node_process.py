"""A package node started as its own process, as users start it, for the tools that drive one
(replay-eval --live, bench-node, the demo). Its output goes to a temporary file, not a pipe
nobody reads: a node that logs a lot must never block on a full pipe."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / "config"


class NodeProcess:
    def __init__(self, node: str, namespace: str, params: dict[str, str] | None = None,
                 params_file: str | None = None):
        """``node``: panoptic_node or occupancy_grid_node; ``params_file`` defaults to the
        package's config/<node without _node>.yaml when it is there."""
        cmd = [sys.executable, "-m", "pisr_ros.ros.entry", node, "--ros-args", "-r", f"__ns:={namespace}"]
        default = CONFIG / f"{node.removesuffix('_node')}.yaml"
        params_file = params_file or (str(default) if default.is_file() else None)
        if params_file:
            cmd += ["--params-file", params_file]
        for key, value in (params or {}).items():
            cmd += ["-p", f"{key}:={value}"]
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
