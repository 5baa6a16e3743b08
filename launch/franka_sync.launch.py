"""Real Franka Panda (franka_ros2 started by you), visual reacher, Seq-SAC.

    ros2 launch asyncrl_ros franka_sync.launch.py --show-args   # every argument
Nodes follow from the mode (asyncrl_ros/learning/modes.py), settings from config/overlays/
(see asyncrl_ros/run/profiles.py and launch_support.py).
"""
from asyncrl_ros.run.launch_support import generate


def generate_launch_description():
    return generate('franka_sync')
