"""Where each task's red target is, episode by episode (core, no ROS).

The Franka reacher's bean bag lies still on the table inside the workspace footprint;
the UR5 tasks show a red disc on a monitor that stays still (reacher) or moves at
constant speed and bounces off the screen's edges (tracker).
"""
from __future__ import annotations

import numpy as np

from asyncrl_ros.sim.monitor_target import MonitorTarget


class TableTarget:
    moving = False

    def __init__(self, rng: np.random.Generator, task: str = 'reacher'):
        if task != 'reacher':
            raise ValueError(f"the table target supports only the reacher task, not '{task}'")
        self.rng = rng
        self.position = self.reset()

    def reset(self) -> np.ndarray:
        from asyncrl_ros.sim.scene import random_target_position
        self.position = random_target_position(self.rng)
        return self.position

    def step(self, dt: float) -> np.ndarray:
        return self.position


class ScreenTarget:
    def __init__(self, rng: np.random.Generator, task: str = 'reacher',
                 monitor: MonitorTarget | None = None):
        from asyncrl_ros.sim.ur5_scene import default_monitor
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
