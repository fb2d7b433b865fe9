"""pip install of the pisr_ros library and the ``pisr-ros`` command.

On a ROS 2 system, ``colcon build`` uses CMakeLists.txt instead (messages + this package).
"""
from setuptools import find_packages, setup

setup(
    name="pisr_ros",
    version="0.1.0",
    description="Real-time panoptic segmentation for ROS 2 (Panoptic-DeepLab + PISR, YOLO-Panoptic)",
    packages=find_packages(include=["pisr_ros", "pisr_ros.*"]),
    python_requires=">=3.10",
    # torch is deliberately not listed: an unpinned torch pulls the CUDA build. `make setup`
    # installs the pinned CPU build; on a GPU machine install the torch that fits its CUDA.
    install_requires=[
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "pillow>=9",
        "cityscapesscripts>=2.2",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        # pisr-ros evaluate: zlib-ng inflates PNGs ~10x faster than zlib; llvmlite compiles the
        # pixel pass (pisr_ros/evaluation/pair_kernel.py). Without either it is slower, not wrong.
        "zlib-ng>=0.5",
        "llvmlite>=0.45",
    ],
    extras_require={
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
        "bags": ["rosbags>=0.10"],
        # pycocotools: the reference test_box_ap checks box AP50 against.
        "test": ["pytest>=7", "pytest-timeout>=2", "pycocotools>=2.0.8"],
    },
    entry_points={
        "console_scripts": [
            "pisr-ros = pisr_ros.cli:main",
            # The same executables colcon installs into lib/pisr_ros for `ros2 run`.
            "panoptic_node = pisr_ros.ros.entry:panoptic_node",
            "occupancy_grid_node = pisr_ros.ros.entry:occupancy_grid_node",
        ],
    },
)
