"""Simulated UR5e for the thesis' reacher and tracker: joint-velocity control, wrist camera,
and a monitor showing a red target that stays still (reacher) or bounces about (tracker).

Core code (no ROS). Same API as `PandaWorld` (both are `ArmWorld`s), plus `task`,
`reset_target`, `target_screen_position` and `ee_rotation`.
"""
from __future__ import annotations

import mujoco
import numpy as np

from asyncrl_ros.robot.robot_specs import UR5_HOME_QPOS
from asyncrl_ros.robot.monitor_target import TASKS, MonitorTarget
from asyncrl_ros.sim.ur5_scene import (ACTUATED, FLANGE_BODY, JOINT_NAMES, TARGET_LIFT,
                                       TASK_VELOCITY_LIMIT, UR5_WORKSPACE, UR5_WORKSPACE_MAX,
                                       UR5_WORKSPACE_MIN, build_spec, default_monitor)
from asyncrl_ros.sim.world_base import ArmWorld

__all__ = ['UR5World', 'HOME_QPOS', 'JOINT_NAMES', 'TASKS', 'TASK_VELOCITY_LIMIT',
           'UR5_WORKSPACE', 'UR5_WORKSPACE_MIN', 'UR5_WORKSPACE_MAX']

# Pan at pi/2 and the wrist level, the flange 0.6 m from the screen centre (robot_specs, shared
# with the real arm).
HOME_QPOS = UR5_HOME_QPOS


class UR5World(ArmWorld):
    """A UR5e facing a monitor, driven by joint-velocity servo targets, seen from its wrist."""

    n_joints: int = 6

    def __init__(self, image_width: int = 160, image_height: int = 90,
                 physics_dt: float = 0.002, seed: int = 0, task: str = 'reacher',
                 monitor: MonitorTarget | None = None):
        self._task = _check_task(task)
        self.monitor = default_monitor() if monitor is None else monitor
        super().__init__(image_width, image_height, physics_dt, seed, joint_names=JOINT_NAMES,
                         flange_body=FLANGE_BODY, home_qpos=HOME_QPOS,
                         velocity_limits=np.full(self.n_joints, TASK_VELOCITY_LIMIT),
                         workspace=UR5_WORKSPACE)
        self.actuated = ACTUATED.copy()
        self.reset_target()

    def _build_spec(self) -> mujoco.MjSpec:
        return build_spec(self.image_width, self.image_height, self.physics_dt, self.monitor)

    # ---- task and target ------------------------------------------------------------------
    @property
    def task(self) -> str:
        """'reacher' (target still) or 'tracker' (target moving); setting it re-draws the target."""
        return self._task

    @task.setter
    def task(self, task: str) -> None:
        self._task = _check_task(task)
        self.reset_target()

    def reset_target(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """A new episode's target (random place; random direction for the tracker); world xyz."""
        self.monitor.reset(self.rng if rng is None else rng, self._task)
        self._place_target()
        return self.target_position()

    def set_target(self, xyz) -> None:
        """Move the target's centre to `xyz` (world, m), a point on the screen; keeps its motion."""
        xyz = self._target_vector(xyz)
        uv, height = self.monitor.to_screen(xyz)
        # Accept the surface itself and the disc's own lift (what target_position returns).
        if not -0.005 <= height <= TARGET_LIFT + 0.005:
            raise ValueError(f'target position {xyz.tolist()} is {height:.3f} m off the screen '
                             'surface: the target lives on the monitor')
        self.monitor.set_position(uv)
        self._place_target()

    def random_target_position(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """A random target position on the screen (world xyz), for set_target; moves nothing."""
        uv = (self.rng if rng is None else rng).uniform(self.monitor.low, self.monitor.high)
        return self.monitor.to_world(uv) + TARGET_LIFT * self.monitor.normal

    def target_screen_position(self) -> np.ndarray:
        """(u, v) of the disc's centre on the screen, m from its centre."""
        return self.monitor.position.copy()

    def _place_target(self) -> None:
        # The red disc floats just in front of the screen surface.
        m = self.monitor
        self.data.mocap_pos[self._mocap] = m.to_world() + TARGET_LIFT * m.normal
        self._update_poses()

    # ---- control, time and state ----------------------------------------------------------
    def set_joint_velocity(self, qdot: np.ndarray) -> None:
        """Servo targets (rad/s), clipped to +-TASK_VELOCITY_LIMIT; wrist_3 is always held (0)."""
        qdot = self._joint_vector(qdot, 'qdot')
        qdot = np.where(self.actuated, np.clip(qdot, -self.velocity_limits, self.velocity_limits),
                        0.0)
        self.data.ctrl[self._act] = qdot

    def _after_step(self, n: int) -> None:
        # The tracker's target moves with simulated time; placing it also brings the flange,
        # camera and target poses up to the new state for render().
        self.monitor.step(n * self.physics_dt)
        self._place_target()

    def ee_rotation(self) -> np.ndarray:
        """Tool-flange orientation in the world frame (3 x 3; column z is the camera axis)."""
        return self.data.xmat[self._flange].reshape(3, 3).copy()


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}' (choose one of {', '.join(TASKS)})")
    return task
