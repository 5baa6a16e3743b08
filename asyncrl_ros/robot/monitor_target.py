"""The thesis' monitor target: a red disc on a flat screen, still (reacher) or bouncing (tracker).

Pure numpy. Screen coordinates (u, v) are metres from the screen centre, u to the right and
v up as seen by someone facing the screen (the robot); only the disc centre is tracked, and it
stays `radius` inside every edge so the whole disc is always on the screen, as in the authors'
monitor program (ur5_async_rl, monitor_communicator.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TASKS = ('reacher', 'tracker')

# A 24-inch 16:9 monitor (531 x 299 mm of picture): the authors draw a 160 x 90 canvas full
# screen, so a 16:9 screen maps their canvas units to square metres.
SCREEN_WIDTH = 0.53
SCREEN_HEIGHT = 0.30
# The authors' disc has radius 7 canvas units of 160 across: 7 / 160 x 0.53 m.
TARGET_RADIUS = 0.023
# The authors move the disc 1 canvas unit per redraw (a 32 ms sleep plus drawing, ~40 ms):
# 0.53 m / 160 / 0.04 s ~ 0.08 m/s. The thesis itself gives no speed.
TRACKER_SPEED = 0.08


def _unit(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.shape != (3,) or not np.all(np.isfinite(x)) or np.linalg.norm(x) < 1e-9:
        raise ValueError(f'{name} must be a finite non-zero 3-vector, got {x!r}')
    return x / np.linalg.norm(x)


@dataclass
class MonitorTarget:
    """Where the red disc is on the screen, and where that screen stands in the world.

    centre: world position of the centre of the screen's front surface; right, up: world
    directions of the screen's u and v axes (orthogonal); the screen faces right x up.
    """
    centre: np.ndarray
    right: np.ndarray
    up: np.ndarray
    width: float = SCREEN_WIDTH
    height: float = SCREEN_HEIGHT
    radius: float = TARGET_RADIUS
    speed: float = TRACKER_SPEED
    position: np.ndarray = field(default_factory=lambda: np.zeros(2))   # (u, v), m
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))   # (du, dv), m/s

    def __post_init__(self):
        self.centre = np.asarray(self.centre, dtype=float)
        if self.centre.shape != (3,) or not np.all(np.isfinite(self.centre)):
            raise ValueError(f'screen centre must be 3 finite numbers, got {self.centre!r}')
        self.right, self.up = _unit(self.right, 'screen right'), _unit(self.up, 'screen up')
        if abs(self.right @ self.up) > 1e-6:
            raise ValueError('screen right and up must be orthogonal')
        for name in ('width', 'height', 'radius', 'speed'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating, np.integer))
                    and math.isfinite(value) and value >= 0):
                raise ValueError(f'{name} must be a finite number >= 0, got {value!r}')
        if not 0 < self.radius < min(self.width, self.height) / 2:
            raise ValueError(f'radius {self.radius} m must be > 0 and leave room on a '
                             f'{self.width} x {self.height} m screen')
        self.position = self._check_uv(self.position)
        self.velocity = np.asarray(self.velocity, dtype=float).reshape(2).copy()

    @property
    def normal(self) -> np.ndarray:
        """World direction the screen faces (towards the robot)."""
        return np.cross(self.right, self.up)

    @property
    def low(self) -> np.ndarray:
        """Smallest (u, v) of the disc centre."""
        return -self.high

    @property
    def high(self) -> np.ndarray:
        """Largest (u, v) of the disc centre."""
        return np.array([self.width / 2 - self.radius, self.height / 2 - self.radius])

    def reset(self, rng: np.random.Generator, task: str) -> np.ndarray:
        """A new episode's target: uniform on the screen; 'tracker' also draws a direction."""
        if task not in TASKS:
            raise ValueError(f"unknown task '{task}' (choose one of {', '.join(TASKS)})")
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f'rng must be a numpy Generator, got {type(rng).__name__}')
        self.position = rng.uniform(self.low, self.high)
        if task == 'tracker':
            angle = rng.uniform(0.0, 2 * np.pi)
            self.velocity = self.speed * np.array([np.cos(angle), np.sin(angle)])
        else:
            self.velocity = np.zeros(2)
        return self.position.copy()

    def step(self, dt: float) -> np.ndarray:
        """Move `dt` s at constant speed, reflecting elastically off the edges (exact, any dt)."""
        if not (isinstance(dt, (int, float, np.floating, np.integer)) and math.isfinite(dt)
                and dt >= 0):
            raise ValueError(f'dt must be a finite number >= 0 s, got {dt!r}')
        lo, hi = self.low, self.high
        span = hi - lo
        # Unfold the bounces: travel on a line, then fold back into [lo, hi]; an odd number of
        # folds means the disc is now heading the other way along that axis.
        s = self.position - lo + self.velocity * dt
        k = np.floor(s / span)
        r = s - k * span
        odd = (k % 2) == 1
        self.position = np.where(odd, hi - r, lo + r)
        self.velocity = np.where(odd, -self.velocity, self.velocity)
        return self.position.copy()

    def set_position(self, uv) -> None:
        self.position = self._check_uv(uv)

    def to_world(self, uv=None) -> np.ndarray:
        """World xyz of screen point(s) `uv` (..., 2) on the front surface; default: the disc."""
        uv = self.position if uv is None else np.asarray(uv, dtype=float)
        return self.centre + uv[..., :1] * self.right + uv[..., 1:2] * self.up

    def to_screen(self, xyz) -> tuple[np.ndarray, float]:
        """(u, v) of world point `xyz` projected on the screen, and its height above the surface."""
        d = np.asarray(xyz, dtype=float) - self.centre
        return np.array([d @ self.right, d @ self.up]), float(d @ self.normal)

    def _check_uv(self, uv) -> np.ndarray:
        try:
            uv = np.asarray(uv, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f'target screen position must be 2 numbers, got {uv!r}') from None
        if uv.shape != (2,) or not np.all(np.isfinite(uv)):
            raise ValueError(f'target screen position must be 2 finite numbers, got {uv!r}')
        if np.any(uv < self.low - 1e-9) or np.any(uv > self.high + 1e-9):
            raise ValueError(f'target screen position {uv.tolist()} is off the screen: the disc '
                             f'centre must stay within +-{self.high.round(4).tolist()} m')
        return uv.copy()
