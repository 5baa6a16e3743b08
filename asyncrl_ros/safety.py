"""The safety layer between the policy and the arm: every velocity command passes through here.

Pure numpy, generic over arms (joint count, limits and forward kinematics come from outside).
Whatever comes in, the output is finite, has one entry per joint and stays within the velocity
limits; with ramping on, it also moves at most max_acceleration * dt from the previous output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from asyncrl_ros.kinematics import position_jacobian

EVENTS = ('bad_state', 'wrong_length', 'nan', 'clamped', 'joint_limit', 'workspace', 'ramped')
_BISECTION_STEPS = 12          # scale resolution 1/4096 of the command
_RETURN_INSET = 0.01           # m: aim this far inside the box when bringing the arm back
_DLS_DAMPING = 0.05            # m: damped least squares stays tame near singularities


@dataclass(kw_only=True)
class SafetyLimits:
    """Limits of one arm. Values the experiment config sets have no default here."""
    velocity_limits: np.ndarray       # (n,) rad/s, > 0
    joint_lower: np.ndarray           # (n,) rad
    joint_upper: np.ndarray           # (n,) rad
    joint_margin: float               # rad kept free before each joint limit
    workspace_min: np.ndarray         # (3,) m, end-effector box in the FK base frame
    workspace_max: np.ndarray         # (3,) m
    max_acceleration: float | None    # rad/s^2 per joint; None: no ramping
    lookahead: float                  # s over which a command is checked (one action cycle)
    return_speed: float = 0.1         # m/s of the end effector while returning into the box

    def __post_init__(self) -> None:
        self.velocity_limits = _vector(self.velocity_limits, 'velocity_limits')
        n = self.velocity_limits.size
        self.joint_lower = _vector(self.joint_lower, 'joint_lower', n)
        self.joint_upper = _vector(self.joint_upper, 'joint_upper', n)
        self.workspace_min = _vector(self.workspace_min, 'workspace_min', 3)
        self.workspace_max = _vector(self.workspace_max, 'workspace_max', 3)
        if np.any(self.velocity_limits <= 0):
            raise ValueError(
                f'SafetyLimits: velocity_limits must be > 0, got {self.velocity_limits}')
        if not (np.isfinite(self.joint_margin) and self.joint_margin >= 0):
            raise ValueError(f'SafetyLimits: joint_margin must be >= 0, got {self.joint_margin}')
        if np.any(self.joint_upper - self.joint_lower <= 2 * self.joint_margin):
            raise ValueError('SafetyLimits: joint_upper - joint_lower must exceed 2 * joint_margin '
                             f'on every joint (lower {self.joint_lower}, upper {self.joint_upper})')
        if np.any(self.workspace_max <= self.workspace_min):
            raise ValueError(f'SafetyLimits: workspace_max {self.workspace_max} must exceed '
                             f'workspace_min {self.workspace_min} on every axis')
        if self.max_acceleration is not None and not (np.isfinite(self.max_acceleration)
                                                      and self.max_acceleration > 0):
            raise ValueError(f'SafetyLimits: max_acceleration must be > 0 or None, '
                             f'got {self.max_acceleration}')
        if not (np.isfinite(self.lookahead) and self.lookahead > 0):
            raise ValueError(f'SafetyLimits: lookahead must be > 0 s, got {self.lookahead}')
        if not (np.isfinite(self.return_speed) and self.return_speed > 0):
            raise ValueError(f'SafetyLimits: return_speed must be > 0, got {self.return_speed}')

    @property
    def n(self) -> int:
        return self.velocity_limits.size


def _vector(x, name: str, n: int | None = None) -> np.ndarray:
    x = np.array(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or (n is not None and x.size != n):
        raise ValueError(f'SafetyLimits: {name} must be a vector of length {n or ">= 1"}, '
                         f'got shape {np.shape(x)}')
    if not np.all(np.isfinite(x)):
        raise ValueError(f'SafetyLimits: {name} must be finite, got {x}')
    return x


class SafetyFilter:
    """Turns any policy command into a safe joint-velocity command.

    Steps, in order (each later one only shrinks or replaces what the earlier ones allowed):
    1. wrong length or any NaN/inf -> zeros;  2. clamp to +-velocity_limits;
    3. joint limits: no joint may be driven past (limit - margin) within the lookahead;
    4. workspace: inside the box, scale the command so the end effector predicted at
       q + cmd * lookahead stays inside; outside, replace it by a command back into the box;
    5. ramp: move at most max_acceleration * dt from the previous output.
    The ramp has the last word, so with ramping on a stop takes v^2 / (2 a) of travel: step 3
    reserves that braking distance, step 4 does not (size the box with it in mind).

    Events returned with each output: 'bad_state' (q not n finite numbers: stop), 'wrong_length'
    (command not n real numbers), 'nan', 'clamped', 'joint_limit', 'workspace', 'ramped'.
    """

    def __init__(self, limits: SafetyLimits, fk_position: Callable[[np.ndarray], np.ndarray]):
        self.limits = limits
        self.fk_position = fk_position
        self._previous = np.zeros(limits.n)
        self._box_min, self._box_max = limits.workspace_min.tolist(), limits.workspace_max.tolist()

    def reset(self) -> None:
        """Forget the previous output: the arm is (being) stopped, so ramp up from zero."""
        self._previous = np.zeros(self.limits.n)

    def _inside(self, p: np.ndarray) -> bool:
        # Plain floats: this runs up to 14 times per command, numpy's overhead would dominate.
        xyz = np.asarray(p, dtype=np.float64).tolist()
        return all(lo <= x <= hi for lo, x, hi in zip(self._box_min, xyz, self._box_max))

    def filter(self, command, q, dt: float,
               bound_workspace: bool = True) -> tuple[np.ndarray, list[str]]:
        """Safe velocity (n,) for `command` at joint positions `q`, dt s after the previous call.

        `bound_workspace=False` skips step 4 only (homing follows a joint-space path that may
        graze the box); speed, joint limits and the ramp still apply.
        """
        lim = self.limits
        if not (isinstance(dt, (int, float, np.integer, np.floating)) and np.isfinite(dt)
                and dt >= 0):
            raise ValueError(f'SafetyFilter.filter: dt must be a finite number >= 0, got {dt!r}')
        events: list[str] = []
        q = _floats(q)
        if q is None or q.shape != (lim.n,) or not np.isfinite(q).all():
            # Without a trustworthy state no rule can be checked: stop (ramped below).
            events.append('bad_state')
            cmd = np.zeros(lim.n)
        else:
            cmd = self._sanitise(command, events)
            clamped = np.clip(cmd, -lim.velocity_limits, lim.velocity_limits)
            if (clamped != cmd).any():
                events.append('clamped')
            cmd = self._joint_limits(clamped, q, events)
            p = np.asarray(self.fk_position(q), dtype=np.float64)
            if p.shape != (3,):
                raise ValueError(
                    f'SafetyFilter: fk_position must return x, y, z, got shape {p.shape}')
            if not bound_workspace:
                pass
            elif self._inside(p):
                cmd = self._keep_inside(cmd, q, events)
            else:
                cmd = self._return_inside(p, q, events)

        if lim.max_acceleration is not None:
            step = lim.max_acceleration * dt
            ramped = np.clip(cmd, self._previous - step, self._previous + step)
            if (ramped != cmd).any():
                events.append('ramped')
            cmd = ramped
        self._previous = cmd
        return cmd.copy(), events

    def _sanitise(self, command, events: list[str]) -> np.ndarray:
        cmd = _floats(command)
        if cmd is None or cmd.shape != (self.limits.n,):
            events.append('wrong_length')
            return np.zeros(self.limits.n)
        if not np.isfinite(cmd).all():
            events.append('nan')
            return np.zeros(self.limits.n)
        return cmd

    def _joint_limits(self, cmd: np.ndarray, q: np.ndarray, events: list[str]) -> np.ndarray:
        lim = self.limits
        room_up = lim.joint_upper - lim.joint_margin - q
        room_down = q - (lim.joint_lower + lim.joint_margin)
        if lim.max_acceleration is not None:
            # A joint already moving outward needs v^2 / 2a to stop under the ramp.
            brake = self._previous ** 2 / (2 * lim.max_acceleration)
            room_up = room_up - np.where(self._previous > 0, brake, 0.0)
            room_down = room_down - np.where(self._previous < 0, brake, 0.0)
        # At or past (limit - margin): nothing outward; before it: no overshoot within lookahead.
        upper = np.maximum(room_up, 0.0) / lim.lookahead
        lower = -np.maximum(room_down, 0.0) / lim.lookahead
        out = np.minimum(np.maximum(cmd, lower), upper)
        if (out != cmd).any():
            events.append('joint_limit')
        return out

    def _keep_inside(self, cmd: np.ndarray, q: np.ndarray, events: list[str]) -> np.ndarray:
        lookahead = self.limits.lookahead
        if not cmd.any() or self._inside(self.fk_position(q + cmd * lookahead)):
            return cmd
        # Bisection on the scale: `best` always predicts inside (scale 0 is the current pose).
        lo, hi, best = 0.0, 1.0, np.zeros_like(cmd)
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            trial = cmd * mid
            if self._inside(self.fk_position(q + trial * lookahead)):
                lo, best = mid, trial
            else:
                hi = mid
        events.append('workspace')
        return best

    def _return_inside(self, p: np.ndarray, q: np.ndarray, events: list[str]) -> np.ndarray:
        """Damped least squares toward the nearest point of the box (like the thesis' URControl)."""
        lim = self.limits
        events.append('workspace')
        inset = np.minimum(_RETURN_INSET, 0.25 * (lim.workspace_max - lim.workspace_min))
        target = np.clip(p, lim.workspace_min + inset, lim.workspace_max - inset)
        v = target - p
        dist = max(float(np.linalg.norm(v)), 1e-12)
        v *= min(lim.return_speed, dist / lim.lookahead) / dist   # slow down on arrival
        J = position_jacobian(self.fk_position, q)
        dq = J.T @ np.linalg.solve(J @ J.T + _DLS_DAMPING ** 2 * np.eye(3), v)
        # One common scale keeps the direction (a per-joint clamp would bend it).
        dq *= min(1.0, float(np.min(lim.velocity_limits / np.maximum(np.abs(dq), 1e-12))))
        dq = np.clip(dq, -lim.velocity_limits, lim.velocity_limits)  # rounding of the scale
        return self._joint_limits(dq, q, events)


def _floats(x) -> np.ndarray | None:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):  # ragged lists, strings, None
        return None


class Watchdog:
    """Says when the policy has gone silent; pure time logic, the caller supplies `now` (s)."""

    def __init__(self, timeout: float):
        if not (np.isfinite(timeout) and timeout > 0):
            raise ValueError(f'Watchdog: timeout must be > 0 s, got {timeout}')
        self.timeout = float(timeout)
        self._last: float | None = None

    def feed(self, now: float) -> None:
        self._last = float(now)

    def expired(self, now: float) -> bool:
        """True before the first feed, after `timeout` without one, or if the clock went back."""
        if self._last is None:
            return True
        elapsed = now - self._last
        return not (0 <= elapsed <= self.timeout)
