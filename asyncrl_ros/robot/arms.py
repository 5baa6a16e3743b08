"""Each arm the package drives as one spec: joints, limits, home pose, workspace, kinematics.

The same spec serves the simulated and the real arm. Its facts come from the robot side only
(`asyncrl_ros.robot.robot_specs`, `asyncrl_ros.robot.kinematics`): a real-arm run never imports the
simulator, and the simulated scenes are built around the same facts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from asyncrl_ros.robot.kinematics import (PANDA_DDQ_MAX, PANDA_DQ_MAX, PANDA_Q_MAX, PANDA_Q_MIN,
                                    panda_fk, ur5_fk)
from asyncrl_ros.robot.robot_specs import (PANDA_HOME_QPOS, PANDA_JOINT_NAMES, PANDA_WORKSPACE_MAX,
                                     PANDA_WORKSPACE_MIN, UR5_ACTUATED, UR5_HOME_QPOS,
                                     UR5_JOINT_NAMES, UR5_TASK_VELOCITY_LIMIT,
                                     UR5_WORKSPACE_MAX, UR5_WORKSPACE_MIN)
from asyncrl_ros.robot.safety import SafetyLimits

# The seeds' own Franka bounds (ReLoD, branch franka, relod/envs/visual_franka_dense_reacher:
# franka_env.py clips every joint velocity action to +-0.2 rad/s; reacher.yaml's
# joint-angle-bound, rad). The paper settings of the Franka profiles use them.
PAPER_FRANKA_MAX_VELOCITY = 0.2
RELOD_FRANKA_JOINT_RANGES = ((-0.5, 0.5), (0.0, 1.2), (-0.5, 0.5), (-2.8, -0.2), (-0.4, 0.4),
                             (1.7, 2.96), (-0.9, 0.9))
# Ours, except joint 2's lower bound: ReLoD's arm returns to q2 = 0.13 (its own end-effector
# frame and box); our home (flange 0.5, 0, 0.40 pointing down) needs q2 = -0.106, so the range
# starts at -0.2 to hold it with the 0.05 rad margin.
PAPER_FRANKA_JOINT_RANGES = ((-0.5, 0.5), (-0.2, 1.2)) + RELOD_FRANKA_JOINT_RANGES[2:]


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
    # Homing's speed bound (rad/s): the arm's own limits, whatever bound the policy gets.
    homing_velocity_limits: np.ndarray
    # The hardware's joint acceleration limit (rad/s^2, the lowest joint's); None: unpublished.
    acceleration_limit: float | None

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
        """Flange position: (n,) -> (3,), a batch (..., n) -> (..., 3)."""
        return self.fk(q)[..., :3, 3]

    def order_joints(self, names: Sequence[str], values: Sequence[float]) -> np.ndarray:
        """Values of a JointState in this arm's joint order (drivers may publish any order)."""
        if len(values) != len(names):
            raise ValueError(f'joint state has {len(names)} names but {len(values)} values')
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.joint_names if n not in index]
        if missing:
            raise ValueError(f'joint state lacks {", ".join(missing)} (got {", ".join(names)})')
        return np.array([values[index[n]] for n in self.joint_names], dtype=float)

    def safety_limits(self, safety_cfg, period: float) -> SafetyLimits:
        """The filter's limits for this arm, filtering every `period` s (use `configured_arm`
        for the config's bounds)."""
        return SafetyLimits(
            velocity_limits=self.velocity_limits.copy(), joint_lower=self.joint_lower.copy(),
            joint_upper=self.joint_upper.copy(), joint_margin=safety_cfg.joint_margin_rad,
            workspace_min=self.workspace_min.copy(), workspace_max=self.workspace_max.copy(),
            max_acceleration=safety_cfg.max_acceleration,
            # The joint state acted on is up to a period old (states come at >= 1 / period)
            # and the controller trails its command by about another: measured in MuJoCo, a
            # lag of one period alone left the flange up to 6 mm outside the box at full speed.
            latency=2 * period)


def franka() -> ArmSpec:
    return ArmSpec(
        name='franka',
        joint_names=tuple(PANDA_JOINT_NAMES),
        velocity_limits=PANDA_DQ_MAX.copy(),
        # Franka's documented joint position limits (rad).
        joint_lower=PANDA_Q_MIN.copy(),
        joint_upper=PANDA_Q_MAX.copy(),
        home_qpos=PANDA_HOME_QPOS.copy(),
        workspace_min=PANDA_WORKSPACE_MIN.copy(),
        workspace_max=PANDA_WORKSPACE_MAX.copy(),
        fk=panda_fk,
        actuated=np.ones(7, dtype=bool),
        reward='paper',
        target='table',
        homing_velocity_limits=PANDA_DQ_MAX.copy(),
        # Franka's documented limits, 15 / 7.5 / 10 / 12.5 / 15 / 20 / 20 rad/s^2.
        acceleration_limit=float(PANDA_DDQ_MAX.min()),
    )


def ur5(variant: str = 'ur5') -> ArmSpec:
    """UR5 (the thesis' arm) or UR5e (the simulated model); same joints, home and box."""
    limit = np.full(6, 2 * np.pi)
    limit[2] = np.pi   # the elbow's documented range
    return ArmSpec(
        name=variant,
        joint_names=tuple(UR5_JOINT_NAMES),
        # The thesis caps every joint at 0.7 rad/s.
        velocity_limits=np.full(6, UR5_TASK_VELOCITY_LIMIT),
        joint_lower=-limit,
        joint_upper=limit.copy(),
        home_qpos=UR5_HOME_QPOS.copy(),
        workspace_min=UR5_WORKSPACE_MIN.copy(),
        workspace_max=UR5_WORKSPACE_MAX.copy(),
        fk=lambda q: ur5_fk(q, variant),
        actuated=UR5_ACTUATED.copy(),
        reward='thesis',
        target='screen',
        homing_velocity_limits=np.full(6, UR5_TASK_VELOCITY_LIMIT),
        # UR publishes no joint acceleration limit (ur_description sets none).
        acceleration_limit=None,
    )


ARMS = {'franka': franka, 'ur5': lambda: ur5('ur5'), 'ur5e': lambda: ur5('ur5e')}


def get_arm(name: str) -> ArmSpec:
    if name not in ARMS:
        raise ValueError(f"unknown arm '{name}' (choose one of {', '.join(ARMS)})")
    return ARMS[name]()


def configured_arm(cfg) -> ArmSpec:
    """`cfg.arm` with the config's safety bounds applied: velocity bound, joint ranges, box.

    Raises ValueError, one line naming the key, for a bound beyond the arm's limits, a joint
    range or box that does not hold the home pose, or a malformed value.
    """
    arm = get_arm(cfg.arm)
    s = cfg.safety
    act = arm.actuated
    if not (np.isfinite(s.max_acceleration) and s.max_acceleration > 0):
        raise ValueError(f"'safety.max_acceleration' must be > 0 rad/s^2 for every arm (every "
                         f"output is ramped), got {s.max_acceleration:g}")
    if arm.acceleration_limit is not None and s.max_acceleration > arm.acceleration_limit:
        raise ValueError(f"'safety.max_acceleration' {s.max_acceleration:g} rad/s^2 is beyond the "
                         f"{arm.name}'s joint acceleration limit {arm.acceleration_limit:g}")
    if not (np.isfinite(s.joint_margin_rad) and s.joint_margin_rad >= 0):
        raise ValueError(f"'safety.joint_margin_rad' must be >= 0, got {s.joint_margin_rad:g}")
    top = float(arm.velocity_limits[act].min())
    if not (np.isfinite(s.max_velocity) and 0 <= s.max_velocity <= top):
        raise ValueError(f"'safety.max_velocity' must be in (0, {top:g}] rad/s (the {arm.name}'s "
                         f"lowest joint limit) or 0 for each joint's own limit, "
                         f"got {s.max_velocity:g}")
    velocity = arm.velocity_limits.copy()
    if s.max_velocity > 0:
        velocity = np.minimum(velocity, s.max_velocity)

    lower, upper = arm.joint_lower.copy(), arm.joint_upper.copy()
    if not _empty(s.joint_ranges):
        ranges = _numbers(s.joint_ranges, 'safety.joint_ranges', (arm.n_joints, 2))
        for i, (lo, hi) in enumerate(ranges):
            if lo < arm.joint_lower[i] or hi > arm.joint_upper[i]:
                raise ValueError(f"'safety.joint_ranges' {arm.joint_names[i]} [{lo:g}, {hi:g}] is "
                                 f"beyond its limits [{arm.joint_lower[i]:g}, "
                                 f"{arm.joint_upper[i]:g}]")
        lower, upper = ranges[:, 0].copy(), ranges[:, 1].copy()
    margin = s.joint_margin_rad
    for i in range(arm.n_joints):
        if not lower[i] + margin <= arm.home_qpos[i] <= upper[i] - margin:
            raise ValueError(f"'safety.joint_ranges' {arm.joint_names[i]} [{lower[i]:g}, "
                             f"{upper[i]:g}] less 'safety.joint_margin_rad' ({margin:g}) does not "
                             f"hold the home pose's {arm.home_qpos[i]:.4g} rad")

    box = []
    for key in ('workspace_min', 'workspace_max'):
        value, default = getattr(s, key), getattr(arm, key)
        box.append(default.copy() if _empty(value) else _numbers(value, f'safety.{key}', (3,)))
    if np.any(box[1] <= box[0]):
        raise ValueError(f"'safety.workspace_max' {np.round(box[1], 3).tolist()} must exceed "
                         f"'safety.workspace_min' {np.round(box[0], 3).tolist()} on every axis")
    home = arm.fk_position(arm.home_qpos)
    if np.any(home < box[0]) or np.any(home > box[1]):
        raise ValueError(f"'safety.workspace_min/max': the box {np.round(box[0], 3).tolist()} .. "
                         f"{np.round(box[1], 3).tolist()} does not hold the home pose's flange "
                         f"{np.round(home, 3).tolist()}")
    return dataclasses.replace(arm, velocity_limits=velocity, joint_lower=lower,
                               joint_upper=upper, workspace_min=box[0], workspace_max=box[1])


def _empty(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 0


def _numbers(value, key: str, shape: tuple) -> np.ndarray:
    try:
        out = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        out = None
    if out is None or out.shape != shape or not np.all(np.isfinite(out)):
        raise ValueError(f"'{key}' must be {' x '.join(map(str, shape))} finite numbers, "
                         f"got {value!r}")
    if out.ndim == 2 and np.any(out[:, 1] <= out[:, 0]):
        raise ValueError(f"'{key}': every [lower, upper] needs lower < upper, got {value!r}")
    return out


def paper_bound_warnings(cfg) -> list[str]:
    """One line if the config lets the Franka move beyond the paper's bounds, else none.

    The paper's (ReLoD's) Franka: joint velocities within +-0.2 rad/s, joints within its
    joint-angle-bound (PAPER_FRANKA_JOINT_RANGES). Assumes `cfg` passed validation.
    """
    if cfg.arm != 'franka':
        return []
    arm = configured_arm(cfg)
    wider = []
    top = float(arm.velocity_limits.max())
    if top > PAPER_FRANKA_MAX_VELOCITY + 1e-9:
        wider.append(f'joint velocities up to {top:g} rad/s (paper {PAPER_FRANKA_MAX_VELOCITY:g})')
    paper = np.array(PAPER_FRANKA_JOINT_RANGES)
    joints = np.flatnonzero((arm.joint_lower < paper[:, 0] - 1e-9)
                            | (arm.joint_upper > paper[:, 1] + 1e-9))
    if joints.size:
        wider.append('joint ranges of joint ' + ', '.join(str(i + 1) for i in joints)
                     + ' (see safety.joint_ranges)')
    if not wider:
        return []
    return [f"franka: bounds wider than the paper's: {'; '.join(wider)}"]
