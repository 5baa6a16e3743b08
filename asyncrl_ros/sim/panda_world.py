"""Simulated Franka Panda for the visual reacher: joint-velocity control, wrist camera, red target.

Core code (no ROS); the shared machinery (time, joint state, camera) is `ArmWorld`'s.
"""
from __future__ import annotations

import mujoco
import numpy as np

from asyncrl_ros.robot.robot_specs import PANDA_HOME_QPOS
from asyncrl_ros.sim.scene import (FLANGE_BODY, JOINT_NAMES, VELOCITY_LIMITS, WORKSPACE,
                                   WORKSPACE_MAX, WORKSPACE_MIN, Workspace, build_spec,
                                   random_target_position)
from asyncrl_ros.sim.world_base import ArmWorld

__all__ = ['PandaWorld', 'HOME_QPOS', 'WORKSPACE', 'WORKSPACE_MIN', 'WORKSPACE_MAX',
           'Workspace', 'JOINT_NAMES']

# Flange at (0.50, 0.00, 0.40) pointing straight down (robot_specs, shared with the real arm).
HOME_QPOS = PANDA_HOME_QPOS


class PandaWorld(ArmWorld):
    """A Panda on a table, driven by joint-velocity servo targets, seen from its wrist."""

    n_joints: int = 7

    def __init__(self, image_width: int = 160, image_height: int = 90,
                 physics_dt: float = 0.002, seed: int = 0):
        super().__init__(image_width, image_height, physics_dt, seed, joint_names=JOINT_NAMES,
                         flange_body=FLANGE_BODY, home_qpos=HOME_QPOS,
                         velocity_limits=VELOCITY_LIMITS, workspace=WORKSPACE)

    def _build_spec(self) -> mujoco.MjSpec:
        return build_spec(self.image_width, self.image_height, self.physics_dt)

    def set_joint_velocity(self, qdot: np.ndarray) -> None:
        """Servo targets (rad/s), clipped to the Panda's velocity limits."""
        qdot = self._joint_vector(qdot, 'qdot')
        self.data.ctrl[self._act] = np.clip(qdot, -self.velocity_limits, self.velocity_limits)

    # ---- target -------------------------------------------------------------------------
    def set_target(self, xyz) -> None:
        """Move the target's centre to `xyz` (world, m)."""
        self.data.mocap_pos[self._mocap] = self._target_vector(xyz)
        self._update_poses()

    def random_target_position(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """A target centre resting on the table, the whole bag inside the box footprint."""
        return random_target_position(self.rng if rng is None else rng)
