"""The safety layer between the policy and the arm: every velocity command passes through here.

Pure numpy, generic over arms (joint count, limits and forward kinematics come from outside).
Whatever comes in, the output is finite, has one entry per joint, stays within the velocity
limits and moves at most max_acceleration * dt from the previous output.

The rules are stated for the whole stop, not for one step: the filter only ever outputs a
velocity from which its own ramp can still bring the arm to rest before every joint limit
(minus a margin) and with the end effector inside the workspace box. Braking is what the ramp
does when asked for zero: every joint slows by max_acceleration * dt per call, independently,
so a joint at speed v stops after about v / a s and v^2 / 2a rad (exactly: the discrete sum of
the ticks, `stop_travel`). By induction the arm can always brake in time: braking from a safe
output continues the very stop that output was checked with.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from asyncrl_ros.robot.kinematics import position_jacobian

EVENTS = ('bad_state', 'wrong_length', 'nan', 'clamped', 'joint_limit', 'workspace', 'ramped')
_BISECTION_STEPS = 12          # scale resolution 1/4096 of the command
_PATH_SAMPLES = 8              # points of a stopping path checked against the box (ends included)
_MIN_TICK = 1e-3               # s: the braking model's step when a call brings (almost) no time
_RETURN_INSET = 0.01           # m: aim this far inside the box when bringing the arm back
_RETURN_ARRIVAL = 0.04         # s: slow down on arrival, covering what is left in this time
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
    max_acceleration: float           # rad/s^2 per joint, > 0: bounds every change and every stop
    # s the arm is ahead of the state the filter is given (joint-state age, the controller's
    # tracking lag): it is assumed to have moved on at the previous output for this long.
    latency: float = 0.0
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
        if not (_real(self.max_acceleration) and np.isfinite(self.max_acceleration)
                and self.max_acceleration > 0):
            raise ValueError(f'SafetyLimits: max_acceleration must be a finite number > 0, '
                             f'got {self.max_acceleration!r}')
        if not (np.isfinite(self.latency) and self.latency >= 0):
            raise ValueError(f'SafetyLimits: latency must be >= 0 s, got {self.latency}')
        if not (np.isfinite(self.return_speed) and self.return_speed > 0):
            raise ValueError(f'SafetyLimits: return_speed must be > 0, got {self.return_speed}')

    @property
    def n(self) -> int:
        return self.velocity_limits.size


def _real(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _vector(x, name: str, n: int | None = None) -> np.ndarray:
    x = np.array(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or (n is not None and x.size != n):
        raise ValueError(f'SafetyLimits: {name} must be a vector of length {n or ">= 1"}, '
                         f'got shape {np.shape(x)}')
    if not np.all(np.isfinite(x)):
        raise ValueError(f'SafetyLimits: {name} must be finite, got {x}')
    return x


def stop_travel(speed, step: float, tick: float, ticks=None) -> np.ndarray:
    """Distance (>= 0) a joint at `speed` (>= 0) covers while the ramp brakes it.

    The output is held for `tick` s and falls by `step` = a * tick per tick: speed, speed - step,
    ... while positive. `ticks` limits the sum to the first ticks (broadcasts against speed).
    Equals v^2 / 2a + v * tick / 2 up to a * tick^2 / 8.
    """
    speed = np.asarray(speed, dtype=np.float64)
    moving = np.ceil(speed / step)                 # ticks with a positive output
    if ticks is not None:
        moving = np.minimum(moving, ticks)
    return tick * (moving * speed - step * moving * (moving - 1) / 2)


def max_stoppable_speed(room, step: float, tick: float) -> np.ndarray:
    """The largest speed whose `stop_travel` fits in `room` (rad; <= 0 gives 0). Exact inverse:
    stop_travel is piecewise linear, reaching tick * step * J (J + 1) / 2 at speed J * step."""
    room = np.maximum(np.asarray(room, dtype=np.float64), 0.0)
    ticks = np.maximum(1.0, np.ceil((np.sqrt(1.0 + 8.0 * room / (tick * step)) - 1.0) / 2.0))
    return (room / tick + step * ticks * (ticks - 1) / 2) / ticks


class SafetyFilter:
    """Turns any policy command into a safe joint-velocity command.

    Steps, in order (each later one only shrinks or replaces what the earlier ones allowed):
    1. wrong length or any NaN/inf -> zeros;  2. clamp to +-velocity_limits;
    3. joint limits: each joint no faster than it can still stop before (limit - margin);
    4. ramp: at most max_acceleration * dt from the previous output;
    5. workspace: inside the box, the whole stop from the new output (this step, then braking)
       must keep the end effector inside, checked by forward kinematics along the stopping
       path; else the output is moved back toward braking (bisection) until it does. Outside
       the box, the output heads back in (damped least squares), within steps 2-4.
    The ramp bounds how fast the filter can brake, so steps 3 and 5 reserve exactly the
    ramp's stopping distance; a stop that the ramp cannot make in time (a state far from the
    last prediction) brakes as hard as the ramp allows.

    Events returned with each output: 'bad_state' (q not n finite numbers: stop), 'wrong_length'
    (command not n real numbers), 'nan', 'clamped', 'joint_limit', 'workspace', 'ramped'.
    """

    def __init__(self, limits: SafetyLimits, fk_position: Callable[[np.ndarray], np.ndarray]):
        """`fk_position` maps joint angles (n,) to x, y, z and a batch (k, n) to (k, 3)."""
        self.limits = limits
        self.fk_position = fk_position
        self._previous = np.zeros(limits.n)
        self._box_min, self._box_max = limits.workspace_min.tolist(), limits.workspace_max.tolist()

    def reset(self) -> None:
        """Forget the previous output: the arm is (being) stopped, so ramp up from zero."""
        self._previous = np.zeros(self.limits.n)

    def _inside(self, p: np.ndarray) -> bool:
        # Plain floats: numpy's overhead would dominate for one point.
        xyz = np.asarray(p, dtype=np.float64).tolist()
        return all(lo <= x <= hi for lo, x, hi in zip(self._box_min, xyz, self._box_max))

    def filter(self, command, q, dt: float, bound_workspace: bool = True,
               velocity_limits=None) -> tuple[np.ndarray, list[str]]:
        """Safe velocity (n,) for `command` at joint positions `q`, dt s after the previous call.

        `bound_workspace=False` skips the workspace rule only (homing follows a joint-space
        path that may graze the box); speed, joint limits and the ramp still apply.
        `velocity_limits` replaces the limits' own for this call (homing's speed).
        """
        lim = self.limits
        if not (_real(dt) and np.isfinite(dt) and dt >= 0):
            raise ValueError(f'SafetyFilter.filter: dt must be a finite number >= 0, got {dt!r}')
        vmax = lim.velocity_limits if velocity_limits is None else _vector(
            velocity_limits, 'velocity_limits', lim.n)
        events: list[str] = []
        prev = self._previous
        step = lim.max_acceleration * dt
        ramp_lo, ramp_hi = prev - step, prev + step
        q = _floats(q)
        if q is None or q.shape != (lim.n,) or not np.isfinite(q).all():
            # Without a trustworthy state no rule can be checked: stop as fast as the ramp allows.
            events.append('bad_state')
            return self._emit(self._ramp(np.zeros(lim.n), ramp_lo, ramp_hi, events), events)

        cmd = self._sanitise(command, events)
        clamped = np.clip(cmd, -vmax, vmax)
        _note(events, 'clamped', clamped, cmd)
        # The braking model steps like the calls do (a call with no time cannot model one).
        tick = max(float(dt), _MIN_TICK)
        brake = lim.max_acceleration * tick
        q_now = q + prev * lim.latency
        joint_hi = max_stoppable_speed(lim.joint_upper - lim.joint_margin - q_now, brake, tick)
        joint_lo = -max_stoppable_speed(q_now - lim.joint_lower - lim.joint_margin, brake, tick)
        allowed = np.clip(clamped, joint_lo, joint_hi)
        _note(events, 'joint_limit', allowed, clamped)
        out = self._ramp(allowed, ramp_lo, ramp_hi, events)
        if not bound_workspace:
            return self._emit(out, events)

        # Every output lies in this per-joint box; its point nearest zero brakes hardest.
        lo = np.clip(np.maximum(-vmax, joint_lo), ramp_lo, ramp_hi)
        hi = np.clip(np.minimum(vmax, joint_hi), ramp_lo, ramp_hi)
        p = np.asarray(self.fk_position(q_now), dtype=np.float64)
        if p.shape != (3,):
            raise ValueError(f'SafetyFilter: fk_position must return x, y, z, got shape {p.shape}')
        if not self._inside(p):
            events.append('workspace')
            back = self._return_velocity(p, q_now, vmax)
            allowed = np.clip(back, joint_lo, joint_hi)
            _note(events, 'joint_limit', allowed, back)
            return self._emit(self._ramp(allowed, ramp_lo, ramp_hi, events), events)
        if self._stop_inside(q_now, out, brake, tick):
            return self._emit(out, events)
        events.append('workspace')
        hardest = np.clip(0.0, lo, hi)
        if not self._stop_inside(q_now, hardest, brake, tick):
            if 'ramped' not in events:
                events.append('ramped')              # the ramp cannot stop it in time
            return self._emit(hardest, events)
        # Bisection between braking and the command: `best` always stops inside.
        s_lo, s_hi, best = 0.0, 1.0, hardest
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (s_lo + s_hi)
            trial = hardest + mid * (out - hardest)
            if self._stop_inside(q_now, trial, brake, tick):
                s_lo, best = mid, trial
            else:
                s_hi = mid
        return self._emit(best, events)

    def _emit(self, out: np.ndarray, events: list[str]) -> tuple[np.ndarray, list[str]]:
        self._previous = out
        return out.copy(), events

    @staticmethod
    def _ramp(v: np.ndarray, lo: np.ndarray, hi: np.ndarray, events: list[str]) -> np.ndarray:
        out = np.clip(v, lo, hi)
        _note(events, 'ramped', out, v)
        return out

    def _sanitise(self, command, events: list[str]) -> np.ndarray:
        cmd = _floats(command)
        if cmd is None or cmd.shape != (self.limits.n,):
            events.append('wrong_length')
            return np.zeros(self.limits.n)
        if not np.isfinite(cmd).all():
            events.append('nan')
            return np.zeros(self.limits.n)
        return cmd

    def _stop_inside(self, q: np.ndarray, v: np.ndarray, brake: float, tick: float) -> bool:
        """Does the end effector stay in the box while v is held one tick and then braked?"""
        speed = np.abs(v)
        top = float(speed.max())
        if top == 0.0:
            return True                              # q itself is inside (checked by the caller)
        ticks = _path_ticks(int(np.ceil(top / brake)))   # until the last joint stops
        path = q + np.sign(v) * stop_travel(speed, brake, tick, ticks[:, None])
        points = np.asarray(self.fk_position(path), dtype=np.float64)
        if points.shape != (len(ticks), 3):
            raise ValueError('SafetyFilter: fk_position must map a batch (k, n) to (k, 3), '
                             f'got shape {points.shape}')
        return bool(np.all((points >= self.limits.workspace_min)
                           & (points <= self.limits.workspace_max)))

    def _return_velocity(self, p: np.ndarray, q: np.ndarray, vmax: np.ndarray) -> np.ndarray:
        """Damped least squares toward the nearest point of the box (like the thesis' URControl)."""
        lim = self.limits
        inset = np.minimum(_RETURN_INSET, 0.25 * (lim.workspace_max - lim.workspace_min))
        target = np.clip(p, lim.workspace_min + inset, lim.workspace_max - inset)
        v = target - p
        dist = max(float(np.linalg.norm(v)), 1e-12)
        v *= min(lim.return_speed, dist / _RETURN_ARRIVAL) / dist
        J = position_jacobian(self.fk_position, q)
        dq = J.T @ np.linalg.solve(J @ J.T + _DLS_DAMPING ** 2 * np.eye(3), v)
        # One common scale keeps the direction (a per-joint clamp would bend it).
        dq *= min(1.0, float(np.min(vmax / np.maximum(np.abs(dq), 1e-12))))
        return np.clip(dq, -vmax, vmax)   # rounding of the scale


@functools.lru_cache(maxsize=256)
def _path_ticks(total: int) -> np.ndarray:
    """Up to _PATH_SAMPLES tick counts from 1 to `total`, both ends included."""
    ticks = np.unique(np.round(np.linspace(1, total, min(total, _PATH_SAMPLES))))
    ticks.flags.writeable = False
    return ticks


def _note(events: list[str], event: str, new: np.ndarray, old: np.ndarray) -> None:
    if event not in events and (new != old).any():
        events.append(event)


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
