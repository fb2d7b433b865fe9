"""Every test run, however started (`make test`, or `source env.sh && pytest ...`), talks DDS on
a domain of its own and discovers only this machine: a run on domain 0 with the default
discovery range would see, and be seen by, every ROS 2 process on the network.
A ROS_DOMAIN_ID or discovery range set by the caller stands (`make test` sets both)."""
from pisr_ros.ros.dds_domain import isolate

# Set before any test module runs, so rclpy contexts and the node processes tests start (they
# inherit the environment) all use it; the lock is held while this pytest process lives.
_DOMAIN_LOCK = isolate()
