"""`sim.real_time_factor: auto` before a run: time one sample + update of the configured
learner on this machine and set the world's starting speed from it (the rule and the
following during the run: asyncrl_ros.learning.world_speed). No ROS here."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Callable

import numpy as np
import torch

from asyncrl_ros.robot.arms import get_arm
from asyncrl_ros.agent.device import resolve
from asyncrl_ros.agent.device_replay import check_replay_fits
from asyncrl_ros.learning.remote import make_agent, make_replay
from asyncrl_ros.learning.world_speed import THESIS_CYCLE_MS, THESIS_SAMPLE_UPDATE_MS, factor_for


def measure_sample_update_ms(cfg, iters: int = 12, warmup: int = 3) -> float:
    """Median wall time (ms) of one sample + update of the configured network, device and
    precision, with the learner's torch threads, from a small replay of random frames.
    A dozen (~2 s on a CPU): the median of three varied by 25 % between runs here, and every
    run of a comparison sets its world's speed from its own measurement."""
    n = get_arm(cfg.arm).n_actuated
    proprio_dim, action_dim = 3 * n, n
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.sac.torch_threads)
    try:
        agent = make_agent(cfg, proprio_dim, action_dim)
        replay = filled_replay(cfg, proprio_dim, action_dim, agent.device)
        crop = (cfg.sac.crop_height, cfg.sac.crop_width)
        times = []
        for _ in range(warmup + iters):
            t0 = time.perf_counter()
            agent.update(replay.sample(cfg.sac.batch_size, crop))  # returns host floats: synced
            times.append((time.perf_counter() - t0) * 1e3)
        return float(np.median(times[warmup:]))
    finally:
        torch.set_num_threads(threads)


def filled_replay(cfg, proprio_dim: int, action_dim: int, device, frames: int | None = None):
    """A replay (make_replay's kind for `device`) holding `frames` random transitions."""
    frames = frames or max(2 * cfg.sac.batch_size, 256)
    # Capacity = what is filled: sampling cost depends on the batch, not on the capacity.
    small = dataclasses.replace(cfg, sac=dataclasses.replace(cfg.sac, replay_capacity=frames + 1))
    replay = make_replay(small, proprio_dim, action_dim, device)
    rng = np.random.default_rng(0)
    shape = (3, cfg.image.height, cfg.image.width)
    pool = rng.integers(0, 256, (16, *shape), dtype=np.uint8)   # content is irrelevant to the cost
    for i in range(frames):
        if i % 100 == 0:
            replay.start_episode(pool[i % 16], rng.normal(size=proprio_dim).astype(np.float32))
        replay.add(rng.uniform(-1, 1, action_dim), float(rng.normal()), pool[(i + 1) % 16],
                   rng.normal(size=proprio_dim).astype(np.float32), terminal=False)
    return replay


def resolve_real_time_factor(cfg, measure: Callable[..., float] = measure_sample_update_ms
                             ) -> tuple[float, float | None, str]:
    """(factor, measured ms or None, one line to log and record) for cfg.sim.real_time_factor.

    A number is returned as it is; 'auto' is computed from `measure(cfg)`.
    """
    rtf = cfg.sim.real_time_factor
    if rtf != 'auto':
        return float(rtf), None, f"real-time factor {float(rtf):g} (from the configuration)"
    measured = measure(cfg)
    factor = factor_for(measured)
    where = resolve(cfg.sac)
    return factor, measured, (
        f"real-time factor auto: one sample + update (batch {cfg.sac.batch_size}, "
        f"{cfg.image.width}x{cfg.image.height}) takes {measured:.1f} ms on {where.device} in "
        f"{where.precision}; the thesis took {THESIS_SAMPLE_UPDATE_MS:g} ms per "
        f"{THESIS_CYCLE_MS:g} ms cycle, so the world runs at {factor:.4g}"
        + (" (capped at 1)" if factor == 1.0 else ""))


def main(argv: list[str] | None = None) -> None:
    """`python -m asyncrl_ros.learning.realtime CONFIG.yaml... [--set key=value]...`: the bringup's
    preflight, in a process of its own (a CUDA context in the bringup would hold GPU memory
    all run): check that a GPU replay fits, measure, and print one JSON object
    {factor, measured_ms, message}, or {error} and exit code 2."""
    from asyncrl_ros.run.config import load_config, parse_override
    args, sources = list(sys.argv[1:] if argv is None else argv), []
    while args:
        arg = args.pop(0)
        sources.append(parse_override(args.pop(0)) if arg == '--set' else arg)
    try:
        cfg = load_config(*sources)
        n = get_arm(cfg.arm).n_actuated
        check_replay_fits(cfg, 3 * n, n)   # a GPU replay that cannot fit: one line, now
        factor, measured, message = resolve_real_time_factor(cfg)
    except ValueError as err:
        print(json.dumps({'error': str(err)}))
        sys.exit(2)
    print(json.dumps({'factor': factor, 'measured_ms': measured, 'message': message}))


if __name__ == '__main__':
    main()
