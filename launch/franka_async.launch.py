"""Real Franka Panda (franka_ros2 started by you), Async-SAC (mode:=async1|async2).

    ros2 launch asyncrl_ros franka_async.launch.py --show-args   # every argument
Nodes follow from the mode (asyncrl_ros/learning/modes.py), settings from config/overlays/
(see asyncrl_ros/run/profiles.py and launch_support.py).
"""
from asyncrl_ros.run.launch_support import ASYNC_MODES, generate


def generate_launch_description():
    return generate('franka', modes=ASYNC_MODES)
