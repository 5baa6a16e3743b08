"""Where each task's red target is, episode by episode (core, no ROS).

The Franka reacher's bean bag lies still on the table inside the workspace footprint;
the UR5 tasks show a red disc on a monitor that stays still (reacher) or moves at
constant speed and bounces off the screen's edges (tracker).
"""
from __future__ import annotations

import numpy as np

from asyncrl_ros.robot.monitor_target import MonitorTarget
from asyncrl_ros.robot.robot_specs import PANDA_WORKSPACE_MAX, PANDA_WORKSPACE_MIN, UR5_ARM_PLANE_X

# The Franka reacher's bean bag (half extents, m); the simulated scene shows the same.
TARGET_HALF_SIZE = np.array([0.045, 0.045, 0.015])
TARGET_HALF_SIZE.flags.writeable = False

# The UR5's monitor: screen surface centre level with the home flange, 0.6 m in front of it;
# it faces the robot (+y), so the robot sees the screen's u axis along world -x.
SCREEN_CENTRE = np.array([UR5_ARM_PLANE_X, -1.0, 0.55])
SCREEN_RIGHT = np.array([-1.0, 0.0, 0.0])
SCREEN_UP = np.array([0.0, 0.0, 1.0])
for _a in (SCREEN_CENTRE, SCREEN_RIGHT, SCREEN_UP):
    _a.flags.writeable = False  # shared constants


def random_target_position(rng: np.random.Generator) -> np.ndarray:
    """A target centre resting on the table, the whole bag inside the box footprint."""
    low = PANDA_WORKSPACE_MIN[:2] + TARGET_HALF_SIZE[:2]
    high = PANDA_WORKSPACE_MAX[:2] - TARGET_HALF_SIZE[:2]
    return np.array([*rng.uniform(low, high), TARGET_HALF_SIZE[2]])


def default_monitor() -> MonitorTarget:
    """The monitor of the UR5 tasks, with the task defaults of MonitorTarget."""
    return MonitorTarget(centre=SCREEN_CENTRE, right=SCREEN_RIGHT, up=SCREEN_UP)


class TableTarget:
    moving = False

    def __init__(self, rng: np.random.Generator, task: str = 'reacher'):
        if task != 'reacher':
            raise ValueError(f"the table target supports only the reacher task, not '{task}'")
        self.rng = rng
        self.position = self.reset()

    def reset(self) -> np.ndarray:
        self.position = random_target_position(self.rng)
        return self.position

    def step(self, dt: float) -> np.ndarray:
        return self.position


class ScreenTarget:
    def __init__(self, rng: np.random.Generator, task: str = 'reacher',
                 monitor: MonitorTarget | None = None):
        self.rng, self.task = rng, task
        self.monitor = monitor or default_monitor()
        self.moving = task == 'tracker'
        self.reset()

    def reset(self) -> np.ndarray:
        self.monitor.reset(self.rng, self.task)
        return self.monitor.to_world()

    def step(self, dt: float) -> np.ndarray:
        if self.moving:
            self.monitor.step(dt)
        return self.monitor.to_world()


TARGETS = {'table': TableTarget, 'screen': ScreenTarget}


def make_target(kind: str, rng: np.random.Generator, task: str):
    if kind not in TARGETS:
        raise ValueError(f"unknown target kind '{kind}' (choose one of {', '.join(TARGETS)})")
    return TARGETS[kind](rng, task)
