"""The safety filter in closed loop with a simulated arm, as arm_driver runs it (no ROS).

Every 10 ms (the driver's period) a command from a stream goes through the filter into the
MuJoCo arm's velocity servos; the filter sees the joint state as the driver does, up to one
joint-state period old. Physics runs in between; nothing is rendered. Used by
test_safety_closed_loop.py (the property) and bench/bench_safety.py (the measurements).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from asyncrl_ros.robot.kinematics import position_jacobian

PERIOD = 0.01          # s: arm_driver's output period
HOLD = 4               # the policy holds each command for one 40 ms action cycle


@dataclass
class Bounds:
    """What the property checks, independent of the filter under test."""
    velocity: np.ndarray
    acceleration: float
    joint_lower: np.ndarray
    joint_upper: np.ndarray
    box_min: np.ndarray
    box_max: np.ndarray


@dataclass
class Record:
    steps: int = 0
    # Largest signed distances past the bound (negative: it stayed that far inside).
    box_excursion: float = -np.inf    # m, of the flange outside the box
    joint_excursion: float = -np.inf  # rad, of a joint past its limit
    velocity_excess: float = -np.inf  # rad/s over the bound
    acceleration_excess: float = -np.inf  # rad/s^2 over the bound
    worst: dict = field(default_factory=dict)   # stream -> (box, joint) excursion
    visited: set = field(default_factory=set)   # voxels of the box the flange entered

    def merge(self, other: 'Record') -> None:
        self.steps += other.steps
        for key in ('box_excursion', 'joint_excursion', 'velocity_excess', 'acceleration_excess'):
            setattr(self, key, max(getattr(self, key), getattr(other, key)))
        self.worst.update(other.worst)
        self.visited |= other.visited


class ClosedLoop:
    def __init__(self, world, arm, safety_filter, bounds: Bounds, seed: int = 0,
                 state_age: float = PERIOD):
        self.world, self.arm, self.filter, self.bounds = world, arm, safety_filter, bounds
        # The property is about the filter's kinematic promises: nothing may hold the arm back.
        world.model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
        self.substeps = int(round(PERIOD / world.physics_dt))
        # The joint state the filter gets is 0 .. state_age old (exclusive), in physics steps.
        self.ages = max(1, int(round(state_age / world.physics_dt)))
        self.rng = np.random.default_rng(seed)

    def run(self, name: str, stream, ticks: int, q0, bound_workspace: bool = True,
            voxel: float | None = None) -> Record:
        w, b, rec = self.world, self.bounds, Record()
        w.set_joint_positions(q0)
        self.filter.reset()
        history = [w.joint_state()[0]] * self.ages
        previous = np.zeros(w.n_joints)
        excursion = -np.inf
        for t in range(ticks):
            # The driver acts on the latest joint state: 0 .. one state period old.
            q_seen = history[-1 - self.rng.integers(self.ages)]
            cmd = stream(t, q_seen)
            if np.shape(cmd) == (w.n_joints,):
                cmd = np.where(self.arm.actuated, cmd, 0.0)   # as arm_driver does
            out, _ = self.filter.filter(cmd, q_seen, PERIOD, bound_workspace=bound_workspace)
            rec.velocity_excess = max(rec.velocity_excess, float(np.max(np.abs(out) - b.velocity)))
            rec.acceleration_excess = max(rec.acceleration_excess, float(
                np.max(np.abs(out - previous)) / PERIOD - b.acceleration))
            previous = out
            w.set_joint_velocity(out)
            for _ in range(self.substeps):
                w.step(w.physics_dt)
                q = w.joint_state()[0]
                history.append(q)
                rec.joint_excursion = max(rec.joint_excursion, float(
                    np.max(np.maximum(q - b.joint_upper, b.joint_lower - q))))
                p = w.ee_position()
                excursion = max(excursion, float(np.max(np.maximum(p - b.box_max, b.box_min - p))))
                if voxel is not None:
                    rec.visited.add(tuple(np.floor((p - b.box_min) / voxel).astype(int)))
            del history[:-self.ages]
        rec.steps = ticks
        if bound_workspace:          # homing-like runs leave the box alone
            rec.box_excursion = excursion
        rec.worst[name] = (rec.box_excursion, rec.joint_excursion)
        return rec


def held(make, hold: int = HOLD):
    """A stream that draws a new command every `hold` ticks (one action cycle) and keeps it."""
    state = {}

    def stream(t, q):
        if t % hold == 0:
            state['cmd'] = make(q)
        return state['cmd']
    return stream


@dataclass
class Stream:
    make: object                  # q -> command, called once per `hold` ticks
    hold: int = HOLD
    boxed: bool = True            # False: the workspace rule is off, as while homing
    start: np.ndarray | None = None   # joint positions to start from (None: home)


def adversarial_streams(arm, limit: np.ndarray, rng) -> dict[str, Stream]:
    """Hostile command streams by name; `limit`: the velocity bound. Each joint is pushed at
    its limits with the box on, and off (as homing runs) from 1 rad before the limit's margin:
    the box alone stops most joints long before their limits."""
    n = arm.n_joints
    act = arm.actuated

    def random(q):
        return rng.uniform(-1.5, 1.5, n) * limit

    def nan(q):
        cmd = random(q)
        if rng.random() < 0.5:
            cmd[rng.integers(n)] = rng.choice([np.nan, np.inf, -np.inf])
        return cmd

    def huge(q):
        return rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(0, 300, n)

    def wrong_length(q):
        if rng.random() < 0.5:
            return random(q)
        return rng.uniform(-3, 3, int(rng.choice([0, n - 1, n + 1, 2 * n])))

    def bang_bang(q):
        return rng.choice([-1.0, 1.0], n) * limit

    streams = {'random': Stream(random), 'nan_inf': Stream(nan), 'huge': Stream(huge),
               'wrong_length': Stream(wrong_length), 'bang_bang': Stream(bang_bang, hold=1)}

    def face_push(axis, sign):
        def make(q):
            direction = np.zeros(3)
            direction[axis] = sign
            J = position_jacobian(arm.fk_position, q)
            cmd = np.zeros(n)
            cmd[act] = np.linalg.pinv(J[:, act]) @ direction
            return cmd * np.min(limit[act] / np.maximum(np.abs(cmd[act]), 1e-12))   # at the bound
        return make

    for axis, name in enumerate('xyz'):
        for sign, side in ((-1, 'min'), (1, 'max')):
            streams[f'face_{name}{side}'] = Stream(face_push(axis, sign))
    for i in np.flatnonzero(act):
        for sign, side in ((-1, 'lower'), (1, 'upper')):
            push = (lambda q, i=i, sign=sign: np.eye(n)[i] * sign * 2 * limit)
            streams[f'joint{i + 1}_{side}'] = Stream(push)
            start = arm.home_qpos.copy()
            start[i] = (arm.joint_upper[i] - 1.05 if sign > 0 else arm.joint_lower[i] + 1.05)
            margin = 0.05
            start[i] = np.clip(start[i], arm.joint_lower[i] + margin, arm.joint_upper[i] - margin)
            streams[f'joint{i + 1}_{side}_unboxed'] = Stream(push, boxed=False, start=start)
    return streams
