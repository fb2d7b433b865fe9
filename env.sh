# source env.sh: a shell in which `pisr-ros`, the node commands, rclpy and pisr_ros.msg work.
# Made by `make setup` (no ROS installation: ROS 2 Kilted from PyPI wheels in .venv).
_pisr_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
if [ ! -f "$_pisr_root/install/setup.sh" ] || [ ! -x "$_pisr_root/.venv/bin/python" ]; then
  echo "env.sh: nothing set up yet in $_pisr_root; run 'make setup' there first" >&2
  unset _pisr_root
  return 1 2>/dev/null || exit 1
fi
. "$_pisr_root/.venv/bin/activate"
export AMENT_PREFIX_PATH="$_pisr_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# colcon's setup.sh locates itself through this variable when sourced from another shell script.
COLCON_CURRENT_PREFIX="$_pisr_root/install" . "$_pisr_root/install/setup.sh"
# The source tree must come before install/ so that its pisr_ros/__init__.py is the one used;
# that file then adds install/'s pisr_ros (the generated msg/ package) to the package path.
export PYTHONPATH="$_pisr_root${PYTHONPATH:+:$PYTHONPATH}"
# Camera-sized messages between processes: a shared-memory segment that holds a whole frame
# (see the file). A profile chosen by the user stays.
if [ -z "${FASTDDS_DEFAULT_PROFILES_FILE:-}" ] && [ -z "${FASTRTPS_DEFAULT_PROFILES_FILE:-}" ]; then
  export FASTDDS_DEFAULT_PROFILES_FILE="$_pisr_root/config/fastdds_large_data.xml"
fi
unset _pisr_root
