"""Panoptic segmentation for one camera: panoptic_node in the camera's namespace, and on request
the occupancy-grid node (same namespace) and RViz.

Usage:
    ros2 launch pisr_ros panoptic.launch.py camera:=/front
    ros2 launch pisr_ros panoptic.launch.py model:=pd_light_base_synth.onnx backend:=onnxruntime
    ros2 launch pisr_ros panoptic.launch.py camera:=/front occupancy_grid:=true rviz:=true
    ros2 launch pisr_ros panoptic.launch.py camera:=/rear params_file:=/path/to/my_panoptic.yaml
    ros2 launch pisr_ros panoptic.launch.py --show-args

Arguments:
    camera:=/front          namespace of the camera: the node reads <camera>/image_raw (or
                            <camera>/image_raw/compressed) and publishes <camera>/panoptic/...
    model:=                 checkpoint (.pt) or ONNX file (.onnx); empty = the params file's
    backend:=               auto | torch | onnxruntime | tensorrt; empty = the params file's
    params_file:=           panoptic_node's parameters; default: the package's config/panoptic.yaml
    occupancy_grid:=false   true: also start occupancy_grid_node in the camera's namespace
    grid_params_file:=      occupancy_grid_node's parameters; default: config/occupancy_grid.yaml
    rviz:=false             true: start rviz2 with config/panoptic.rviz (camera image, overlay, grid)
    use_sim_time:=false     true: all nodes follow /clock (replaying a bag with --clock)

Before it starts any node, the launch checks what it needs (the params files, the executables,
rviz2 with rviz:=true) and, if anything is missing, stops with one line that names it.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node

from pisr_ros.ros.launch_checks import launch_problems

PACKAGE = "pisr_ros"
BOOLEAN = ["false", "true"]
# The topics that config/panoptic.rviz shows, as written there (for camera:=/front); RViz is
# remapped to the chosen camera's topics below.
RVIZ_TOPICS = ("image_raw", "panoptic/overlay", "panoptic/grid")
RVIZ_CAMERA = "/front"


def _share(*parts):
    return os.path.join(get_package_share_directory(PACKAGE), *parts)


def _optional_overrides(context):
    """model:= and backend:= override the params file only when given. LaunchConfiguration('model')
    put in `parameters` directly would always be sent, and an empty one does not even evaluate
    (launch_ros reads substituted values as YAML, and '' is null)."""
    given = {
        "model": LaunchConfiguration("model").perform(context),
        "backend": LaunchConfiguration("backend").perform(context),
    }
    return {name: value for name, value in given.items() if value}


def _check_requirements(context):
    # Runs before the actions that start nodes (entities run in order, and an exception stops
    # the rest): launch prints "Caught exception in launch ...: <the one line>" and starts nothing.
    problems = launch_problems(**{name: LaunchConfiguration(name).perform(context) for name in
                                  ("params_file", "occupancy_grid", "grid_params_file", "rviz")})
    if problems:
        raise RuntimeError("panoptic.launch.py: " + "; ".join(problems))
    return []


def _panoptic_node(context):
    # Created at launch time (OpaqueFunction) because which parameters it gets depends on the
    # values of model:= and backend:=.
    return [
        Node(
            package=PACKAGE,
            executable="panoptic_node",
            namespace=LaunchConfiguration("camera"),
            output="screen",
            # Later entries win: the params file, then the overrides given on the command line.
            parameters=[
                LaunchConfiguration("params_file"),
                _optional_overrides(context),
                {"use_sim_time": LaunchConfiguration("use_sim_time")},
            ],
        )
    ]


def generate_launch_description():
    camera = LaunchConfiguration("camera")
    use_sim_time = {"use_sim_time": LaunchConfiguration("use_sim_time")}
    return LaunchDescription([
        DeclareLaunchArgument("camera", default_value="/front",
                              description="Namespace of the camera (its image_raw topic)."),
        DeclareLaunchArgument("model", default_value="",
                              description="Model file (.pt or .onnx); empty: the params file's."),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto | torch | onnxruntime | tensorrt; empty: the params file's."),
        DeclareLaunchArgument("params_file", default_value=_share("config", "panoptic.yaml"),
                              description="Parameters of panoptic_node."),
        DeclareLaunchArgument("occupancy_grid", default_value="false", choices=BOOLEAN,
                              description="Also start occupancy_grid_node in the camera's namespace."),
        DeclareLaunchArgument("grid_params_file", default_value=_share("config", "occupancy_grid.yaml"),
                              description="Parameters of occupancy_grid_node."),
        DeclareLaunchArgument("rviz", default_value="false", choices=BOOLEAN,
                              description="Start rviz2 with config/panoptic.rviz."),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=BOOLEAN,
                              description="Nodes follow /clock."),
        OpaqueFunction(function=_check_requirements),
        OpaqueFunction(function=_panoptic_node),
        Node(
            package=PACKAGE,
            executable="occupancy_grid_node",
            namespace=camera,
            output="screen",
            parameters=[LaunchConfiguration("grid_params_file"), use_sim_time],
            condition=IfCondition(LaunchConfiguration("occupancy_grid")),
        ),
        Node(
            package="rviz2",
            executable="rviz2",
            arguments=["-d", _share("config", "panoptic.rviz")],
            parameters=[use_sim_time],
            # The .rviz file names /front's topics; remap them to this camera's (a no-op for /front).
            # PathJoinSubstitution joins like os.path.join, which is also how a namespace and a
            # topic join: '/front' or '/front/' + 'image_raw' -> '/front/image_raw', '/' -> '/image_raw'.
            remappings=[(f"{RVIZ_CAMERA}/{topic}", PathJoinSubstitution([camera, topic]))
                        for topic in RVIZ_TOPICS],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
    ])
