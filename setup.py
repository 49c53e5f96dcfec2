"""colcon (ament_python) entry: metadata lives in pyproject.toml; this adds the ament index
marker, launch and config files so `ros2 run gs_semantic gs_semantic_node` and
`ros2 launch gs_semantic gs_semantic.launch.py` work inside a real ROS 2 install."""

from glob import glob

from setuptools import setup

setup(
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/gs_semantic"]),
        ("share/gs_semantic", ["package.xml"]),
        ("share/gs_semantic/launch", glob("launch/*.py")),
        ("share/gs_semantic/config", glob("config/*.yaml")),
    ],
    entry_points={"console_scripts": ["gs_semantic_node = gs_semantic_node.ros.node:main"]},
)
