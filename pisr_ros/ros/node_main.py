"""How both nodes start, run and stop: one convention for a node that cannot start.

A node's constructor raises :class:`StartError` (or the library's ``UsageError``) when its
parameters, model or files are refused. :func:`run` then prints one line,
``<node>: cannot start: <reason>``, on stderr (what ``ros2 launch`` shows; rclpy's logger is not
set up for a node that never existed) and returns exit status 2, as the command line does for
bad input. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions, uninstall_signal_handlers

from pisr_ros.allocator import keep_freed_memory
from pisr_ros.errors import UsageError

START_FAILED = 2
# rcl's error texts end in where in its C sources they were raised: ", at /project/src/x.c:271".
_C_SOURCE = re.compile(r", at \S+\.c:\d+")


class StartError(UsageError):
    """A parameter, model or file problem that stops a node from starting; the message says why
    and, where it can, what to do."""


def start_failure_line(node_name: str, exc: BaseException) -> str:
    reason = " ".join(str(exc).split())  # one line, whatever the exception's text holds
    return f"{node_name}: cannot start: {reason}"


def run(node_name: str, make_node: Callable[[Context], Node], argv: list[str] | None = None) -> int:
    """Start the node ``make_node(context)`` makes and spin it until Ctrl-C or shutdown.

    ``argv``: the arguments after the program name (``--ros-args ...``); None: ``sys.argv``.
    Returns 0 after a clean stop, 2 when the node refused to start. A node with a ``stop()``
    method has it called before it is destroyed (its own threads end there).
    """
    args = sys.argv if argv is None else [sys.argv[0], *argv]
    memory = keep_freed_memory()  # a no-op when ros/entry.py already did it, before any import
    # A context of its own (so that tests can call main() beside other nodes), with rclpy's signal
    # handlers all the same: without them Ctrl-C cannot wake an executor blocked in rcl_wait.
    context = Context()
    try:
        rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.ALL)
    except _rclpy.RCLError as exc:  # ROS arguments rcl cannot parse: a -p rule, a missing params file
        print(start_failure_line(node_name, _C_SOURCE.sub("", str(exc))), file=sys.stderr, flush=True)
        return START_FAILED
    node = None
    executor = None
    try:
        try:
            node = make_node(context)
        except UsageError as exc:
            print(start_failure_line(node_name, exc), file=sys.stderr, flush=True)
            return START_FAILED
        node.get_logger().info(memory)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return 0
    finally:
        if node is not None:
            stop = getattr(node, "stop", None)
            if stop is not None:
                stop()
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context, uninstall_handlers=True)
        else:
            uninstall_signal_handlers()
