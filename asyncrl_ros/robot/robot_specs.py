"""The arms' own facts, one home each: joint names, home poses, workspace boxes, task limits.

Robot-side, no simulator: `asyncrl_ros.robot.arms` builds each arm's spec (and so the real arms'
safety limits) from these without importing MuJoCo, and the simulated scenes under
`asyncrl_ros.sim` are built around the same facts by importing them from here, never the
other way round. The published kinematic parameters and datasheet joint limits (position,
velocity, acceleration) live in `asyncrl_ros.robot.kinematics`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asyncrl_ros.robot.kinematics import UR_DH


@dataclass(frozen=True)
class Workspace:
    """An axis-aligned box for the end effector, in the world frame (m).

    The defaults are the Panda paper's 40 x 60 x 30 cm box (x depth, y width, z height) in
    front of the base, over the table: x 0.30..0.70, y -0.30..0.30, z 0.12..0.42 m (the floor
    keeps the wrist clear of the table, the top holds the home pose's flange at 0.40).
    """
    centre: tuple[float, float, float] = (0.50, 0.0, 0.27)
    size: tuple[float, float, float] = (0.40, 0.60, 0.30)

    @property
    def low(self) -> np.ndarray:
        return np.asarray(self.centre) - np.asarray(self.size) / 2

    @property
    def high(self) -> np.ndarray:
        return np.asarray(self.centre) + np.asarray(self.size) / 2


# ----- Franka Panda (world frame = the robot's base frame, link0) -----
PANDA_JOINT_NAMES = tuple(f'panda_joint{i}' for i in range(1, 8))
# Flange at (0.50, 0.00, 0.40) pointing straight down (q6 = q2 - q4), the camera's image "up"
# along world +x: the wrist camera sees the whole table footprint of the workspace.
PANDA_HOME_QPOS = np.array([0.0, -0.1061, 0.0, -2.2775, 0.0, 2.1714, -0.7854])
# The paper's 40 x 60 x 30 cm box: Workspace's defaults.
PANDA_WORKSPACE = Workspace()
PANDA_WORKSPACE_MIN = PANDA_WORKSPACE.low
PANDA_WORKSPACE_MAX = PANDA_WORKSPACE.high

# ----- UR5 / UR5e (world frame = UR's DH base frame, the controller's `base`) -----
# ur_robot_driver's joint names, in its command order.
UR5_JOINT_NAMES = ('shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint',
                   'wrist_2_joint', 'wrist_3_joint')
# Thesis: five joints actuated, each within [-0.7, 0.7] rad/s; the last wrist joint is held.
UR5_TASK_VELOCITY_LIMIT = 0.7
UR5_ACTUATED = np.array([True, True, True, True, True, False])
# With the pan joint at pi/2 (the authors' reset pose) and the camera level towards the monitor,
# the flange sits d4 (UR5e: 0.1333 m) to the side of the base: monitor and box are centred there.
UR5_ARM_PLANE_X = float(UR_DH['ur5e'][3, 0])
# The thesis' 0.8 x 0.7 x 0.7 m box (x across the monitor, y towards it, z up), placed as the
# authors' 'Visual-UR5' box (ur5_async_rl, ur_setup.py; there in base_link coordinates) and
# grown to the thesis' size: the flange 0.10-0.80 m in front of the base, 0.20-0.90 m above the
# table; the screen stands 0.2 m beyond the box's far face.
UR5_WORKSPACE = Workspace(centre=(UR5_ARM_PLANE_X, -0.45, 0.55), size=(0.80, 0.70, 0.70))
UR5_WORKSPACE_MIN = UR5_WORKSPACE.low
UR5_WORKSPACE_MAX = UR5_WORKSPACE.high
# Pan at pi/2 and the wrist level (ur5_penalty exactly 0: wrist_1 = -pi - lift - elbow,
# wrist_2 = -pan), close to the authors' reset pose (1.59, -2.0, 2.1, -3.02, -1.64, pi): the
# flange at (0.1333, -0.400, 0.550), 0.6 m from the screen centre, looking straight at it with
# the image's up along world +z.
_LIFT, _ELBOW = -1.7341, 2.0761
UR5_HOME_QPOS = np.array([np.pi / 2, _LIFT, _ELBOW, -np.pi - _LIFT - _ELBOW, -np.pi / 2, 0.0])

for _a in (PANDA_HOME_QPOS, PANDA_WORKSPACE_MIN, PANDA_WORKSPACE_MAX,
           UR5_ACTUATED, UR5_WORKSPACE_MIN, UR5_WORKSPACE_MAX, UR5_HOME_QPOS):
    _a.flags.writeable = False  # shared constants: a stray in-place edit would move everyone's
del _a
