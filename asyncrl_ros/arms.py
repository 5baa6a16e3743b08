"""Facts about each arm the package drives: joints, limits, home pose, workspace, kinematics.

The same spec serves the simulated and the real arm: the simulated scene is built
around the same base frame, home pose and workspace box.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from asyncrl_ros.kinematics import panda_fk, ur5_fk
from asyncrl_ros.safety import SafetyLimits


@dataclass(frozen=True)
class ArmSpec:
    name: str
    joint_names: tuple[str, ...]
    velocity_limits: np.ndarray
    joint_lower: np.ndarray
    joint_upper: np.ndarray
    home_qpos: np.ndarray
    workspace_min: np.ndarray
    workspace_max: np.ndarray
    fk: Callable[[np.ndarray], np.ndarray]
    # Joints the policy drives; the others are held at zero velocity (UR5: the last wrist).
    actuated: np.ndarray
    # Which reward of the seeds this arm's task uses ('paper' Franka, 'thesis' UR5).
    reward: str
    # Which target the task shows: on the table ('table') or on a monitor ('screen').
    target: str

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def n_actuated(self) -> int:
        return int(np.count_nonzero(self.actuated))

    def full_command(self, actuated_values: np.ndarray) -> np.ndarray:
        """Velocities of the actuated joints -> a command for every joint (others zero)."""
        out = np.zeros(self.n_joints)
        out[self.actuated] = actuated_values
        return out

    def fk_position(self, q: np.ndarray) -> np.ndarray:
        return self.fk(q)[:3, 3]

    def order_joints(self, names: Sequence[str], values: Sequence[float]) -> np.ndarray:
        """Values of a JointState in this arm's joint order (drivers may publish any order)."""
        if len(values) != len(names):
            raise ValueError(f'joint state has {len(names)} names but {len(values)} values')
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.joint_names if n not in index]
        if missing:
            raise ValueError(f'joint state lacks {", ".join(missing)} (got {", ".join(names)})')
        return np.array([values[index[n]] for n in self.joint_names], dtype=float)

    def safety_limits(self, safety_cfg, lookahead: float) -> SafetyLimits:
        return SafetyLimits(
            velocity_limits=self.velocity_limits.copy(), joint_lower=self.joint_lower.copy(),
            joint_upper=self.joint_upper.copy(), joint_margin=safety_cfg.joint_margin_rad,
            workspace_min=self.workspace_min.copy(), workspace_max=self.workspace_max.copy(),
            # 0 switches ramping off (refused for the Franka by the config's validation).
            max_acceleration=safety_cfg.max_acceleration or None, lookahead=lookahead)


def franka() -> ArmSpec:
    from asyncrl_ros.sim.panda_world import HOME_QPOS
    from asyncrl_ros.sim.scene import JOINT_NAMES, VELOCITY_LIMITS, WORKSPACE_MAX, WORKSPACE_MIN
    return ArmSpec(
        name='franka',
        joint_names=tuple(JOINT_NAMES),
        velocity_limits=VELOCITY_LIMITS.copy(),
        # Franka's documented joint position limits (rad).
        joint_lower=np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]),
        joint_upper=np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]),
        home_qpos=HOME_QPOS.copy(),
        workspace_min=WORKSPACE_MIN.copy(),
        workspace_max=WORKSPACE_MAX.copy(),
        fk=panda_fk,
        actuated=np.ones(7, dtype=bool),
        reward='paper',
        target='table',
    )


def ur5(variant: str = 'ur5') -> ArmSpec:
    """UR5 (the thesis' arm) or UR5e (the simulated model); same joints, home and box."""
    from asyncrl_ros.sim.ur5_scene import (ACTUATED, JOINT_NAMES, TASK_VELOCITY_LIMIT,
                                           UR5_WORKSPACE_MAX, UR5_WORKSPACE_MIN)
    from asyncrl_ros.sim.ur5_world import HOME_QPOS
    limit = np.full(6, 2 * np.pi)
    limit[2] = np.pi   # the elbow's documented range
    return ArmSpec(
        name=variant,
        joint_names=tuple(JOINT_NAMES),
        # The thesis caps every joint at 0.7 rad/s.
        velocity_limits=np.full(6, TASK_VELOCITY_LIMIT),
        joint_lower=-limit,
        joint_upper=limit.copy(),
        home_qpos=HOME_QPOS.copy(),
        workspace_min=UR5_WORKSPACE_MIN.copy(),
        workspace_max=UR5_WORKSPACE_MAX.copy(),
        fk=lambda q: ur5_fk(q, variant),
        actuated=ACTUATED.copy(),
        reward='thesis',
        target='screen',
    )


ARMS = {'franka': franka, 'ur5': lambda: ur5('ur5'), 'ur5e': lambda: ur5('ur5e')}


def get_arm(name: str) -> ArmSpec:
    if name not in ARMS:
        raise ValueError(f"unknown arm '{name}' (choose one of {', '.join(ARMS)})")
    return ARMS[name]()
