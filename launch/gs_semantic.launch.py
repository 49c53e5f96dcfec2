"""Real ROS 2 installs: `ros2 launch gs_semantic gs_semantic.launch.py params:=/path/to.yaml`."""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description():
    default = os.path.join(get_package_share_directory("gs_semantic"), "config", "defaults.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument("params", default_value=default, description="parameter YAML"),
            DeclareLaunchArgument("namespace", default_value="", description="robot namespace"),
            Node(
                package="gs_semantic",
                executable="gs_semantic_node",
                name="gs_semantic",
                namespace=LaunchConfiguration("namespace"),
                output="screen",
                parameters=[LaunchConfiguration("params")],
            ),
        ]
    )
