"""Facts about each arm the package drives: joints, limits, home pose, workspace, kinematics.

The same spec serves the simulated and the real arm: the simulated scene is built
around the same base frame, home pose and workspace box.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from asyncrl_ros.kinematics import panda_fk
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

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

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
            max_acceleration=safety_cfg.max_acceleration, lookahead=lookahead)


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
    )


ARMS = {'franka': franka}


def get_arm(name: str) -> ArmSpec:
    if name not in ARMS:
        raise ValueError(f"unknown arm '{name}' (choose one of {', '.join(ARMS)})")
    return ARMS[name]()
