"""ros tier: real rclpy entities over loopback DDS, no mocks of rclpy."""
import time
import uuid
from pathlib import Path

import pytest

try:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    import pisr_ros.msg  # noqa: F401  (built by colcon in `make setup`)
except ImportError as exc:  # pragma: no cover - a set-up problem, not a test outcome
    raise ImportError(
        f"the ros-tier tests need rclpy and the built messages: run `make setup` and `source env.sh` ({exc})"
    ) from exc

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if _HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.ros)


@pytest.fixture
def ros_node():
    """A node in a context of its own, with an executor; everything is shut down afterwards."""
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("pisr_ros_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    node.executor_for_test = executor
    try:
        yield node
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


@pytest.fixture
def spin_until(ros_node):
    """spin_until(predicate, timeout): spin the test node until ``predicate()`` holds."""

    def spin(predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            ros_node.executor_for_test.spin_once(timeout_sec=0.05)
        return predicate()

    return spin


@pytest.fixture
def unique_ns():
    """A namespace no other test or run uses ('/t' + random hex): fixed topic names would let two
    runs that share a domain (ROS_DOMAIN_ID set by hand) exchange messages."""
    return f"/t{uuid.uuid4().hex[:12]}"
