"""Real UR5 (ur_robot_driver started by you), Seq-SAC.

    ros2 launch asyncrl_ros ur5_sync.launch.py --show-args   # every argument
Nodes follow from the mode (asyncrl_ros/learning/modes.py), settings from config/overlays/
(see asyncrl_ros/run/profiles.py and launch_support.py).
"""
from asyncrl_ros.run.launch_support import generate


def generate_launch_description():
    return generate('ur5_sync')
