"""Simulated Franka Panda, visual reacher, Seq-SAC.

    ros2 launch asyncrl_ros franka_sim_sync.launch.py --show-args   # every argument
Nodes and settings come from config/profiles.yaml (see asyncrl_ros/launch_support.py).
"""
from asyncrl_ros.launch_support import generate


def generate_launch_description():
    return generate('franka_sim_sync')
