"""The safety filter in closed loop with the simulated arms: how far outside its bounds the arm
gets under hostile commands, and how much of the box a policy can still reach.

For each arm (Panda at the datasheet limits, Panda with the paper's bounds, UR5e at the
thesis' 0.7 rad/s), commands pass through the filter every 10 ms into MuJoCo (see
test/closed_loop.py):
- hostile streams (random, NaN/inf, huge, wrong length, bang-bang, pushes toward each face of
  the box and each joint limit): the largest flange distance outside the box and joint
  distance past a limit;
- usability at the policy's command scale: the share of the box's 5 cm cells that a random
  policy's flange enters (episodes from home, the task's length), and the share of random
  targets in the box that a goal-seeking policy reaches within 2 cm in 6 s.
`--filter FILE` measures another safety.py (e.g. an older one: `git show
<commit>:asyncrl_ros/robot/safety.py > /tmp/old_safety.py`); a filter whose limits take a
`lookahead` (before the braking-aware rules) gets the driver's old 40 ms and 15 rad/s^2.
The very last line printed is one JSON object of the figures.

    MUJOCO_GL=egl python bench/bench_safety.py [--filter FILE] [--episodes 30] [--targets 40]
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault('MUJOCO_GL', 'egl')
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / 'test')]

import numpy as np  # noqa: E402

from asyncrl_ros.robot.arms import PAPER_FRANKA_JOINT_RANGES, configured_arm  # noqa: E402
from asyncrl_ros.run.config import load_config  # noqa: E402
from asyncrl_ros.robot.kinematics import position_jacobian  # noqa: E402
from closed_loop import PERIOD, Bounds, ClosedLoop, adversarial_streams, held  # noqa: E402

SETUPS = {   # name: (config overrides, the task's episode length in s)
    'franka': ({'arm': 'franka'}, 6.0),
    'franka_paper': ({'arm': 'franka', 'safety': {
        'max_velocity': 0.2, 'velocity_fraction': 1.0,
        'joint_ranges': [list(r) for r in PAPER_FRANKA_JOINT_RANGES]}}, 6.0),
    'ur5e': ({'arm': 'ur5e', 'safety': {'velocity_fraction': 1.0}}, 4.0),
}
VOXEL = 0.05


def load_filter(path: str | None):
    if path is None:
        import asyncrl_ros.robot.safety as module
        return module
    spec = importlib.util.spec_from_file_location('safety_under_test', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def make_filter(module, arm, cfg):
    fields = {f.name for f in dataclasses.fields(module.SafetyLimits)}
    kwargs = dict(velocity_limits=arm.velocity_limits, joint_lower=arm.joint_lower,
                  joint_upper=arm.joint_upper, joint_margin=cfg.safety.joint_margin_rad,
                  workspace_min=arm.workspace_min, workspace_max=arm.workspace_max)
    if 'lookahead' in fields:   # the filter before braking-aware rules, as its driver set it
        kwargs.update(max_acceleration=15.0, lookahead=0.04)
        acceleration = 15.0
    else:
        limits = arm.safety_limits(cfg.safety, PERIOD)   # as arm_driver builds them
        kwargs.update(max_acceleration=limits.max_acceleration, latency=limits.latency)
        acceleration = limits.max_acceleration
    bounds = Bounds(arm.velocity_limits, acceleration, arm.joint_lower, arm.joint_upper,
                    arm.workspace_min, arm.workspace_max)
    return module.SafetyFilter(module.SafetyLimits(**kwargs), arm.fk_position), bounds


def make_world(arm_name: str):
    if arm_name == 'franka':
        from asyncrl_ros.sim.panda_world import PandaWorld
        return PandaWorld(16, 9)
    from asyncrl_ros.sim.ur5_world import UR5World
    return UR5World(16, 9)


def measure(setup: str, module, args) -> dict:
    overrides, episode_s = SETUPS[setup]
    cfg = load_config(overrides)
    arm = configured_arm(cfg)
    world = make_world(cfg.arm)
    safety_filter, bounds = make_filter(module, arm, cfg)
    loop = ClosedLoop(world, arm, safety_filter, bounds, seed=1)
    rng = np.random.default_rng(2)
    t0 = time.perf_counter()
    hostile = None
    for name, s in adversarial_streams(arm, arm.velocity_limits, rng).items():
        rec = loop.run(name, held(s.make, s.hold), args.ticks,
                       arm.home_qpos if s.start is None else s.start, bound_workspace=s.boxed)
        hostile = rec if hostile is None else (hostile.merge(rec) or hostile)
    # Usability at the policy's scale: actions in [-1, 1] times this.
    scale = arm.velocity_limits * cfg.safety.velocity_fraction * arm.actuated
    coverage = None
    for _ in range(args.episodes):
        rec = loop.run('random policy', held(lambda q: rng.uniform(-1, 1, arm.n_joints) * scale),
                       int(round(episode_s / PERIOD)), arm.home_qpos, voxel=VOXEL)
        coverage = rec if coverage is None else (coverage.merge(rec) or coverage)
    cells = np.ceil((arm.workspace_max - arm.workspace_min) / VOXEL - 1e-9).astype(int)
    inside = {c for c in coverage.visited if all(0 <= c[i] < cells[i] for i in range(3))}
    reached = 0
    for _ in range(args.targets):
        target = rng.uniform(arm.workspace_min, arm.workspace_max)
        reached += _reach(loop, arm, scale, target)
    return {
        'filter steps': hostile.steps, 'seconds': round(time.perf_counter() - t0, 1),
        'max box excursion cm': round(100 * hostile.box_excursion, 2),
        'worst stream': max(hostile.worst, key=lambda k: hostile.worst[k][0]),
        'max joint excursion rad': round(hostile.joint_excursion, 4),
        'velocity excess': round(hostile.velocity_excess, 9),
        'acceleration excess': round(hostile.acceleration_excess, 6),
        'random policy: box cells entered %': round(100 * len(inside) / np.prod(cells), 1),
        'random policy: max box excursion cm': round(100 * coverage.box_excursion, 2),
        'targets reached %': round(100 * reached / args.targets, 1),
    }


def _reach(loop, arm, scale, target, seconds=6.0, tolerance=0.02) -> bool:
    """A goal-seeking policy: the flange heads for `target` at up to 0.5 m/s, within `scale`."""
    act = arm.actuated
    best = [np.inf]

    def make(q):
        error = target - arm.fk_position(q)
        best[0] = min(best[0], float(np.linalg.norm(error)))
        J = position_jacobian(arm.fk_position, q)[:, act]
        cmd = np.zeros(arm.n_joints)
        cmd[act] = np.linalg.pinv(J) @ (error * min(5.0, 0.5 / max(np.linalg.norm(error), 1e-9)))
        return cmd * min(1.0, float(np.min(scale[act] / np.maximum(np.abs(cmd[act]), 1e-12))))

    loop.run('reach', held(make), int(round(seconds / PERIOD)), arm.home_qpos)
    return best[0] < tolerance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--filter', help='a safety.py to measure instead of the package\'s')
    parser.add_argument('--setups', nargs='+', default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument('--ticks', type=int, default=400, help='filter steps per hostile stream')
    parser.add_argument('--episodes', type=int, default=30, help='random-policy episodes')
    parser.add_argument('--targets', type=int, default=40)
    args = parser.parse_args()
    module = load_filter(args.filter)
    results = {}
    for setup in args.setups:
        results[setup] = measure(setup, module, args)
        print(setup, json.dumps(results[setup], indent=1), flush=True)
    print(json.dumps(results))


if __name__ == '__main__':
    main()
