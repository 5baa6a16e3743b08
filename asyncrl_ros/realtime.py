"""`sim.real_time_factor: auto`: slow the simulated world just enough that learning keeps the
thesis' pace. No ROS here.

The thesis' Seq-SAC baseline spent 45 ms on sampling + update (Table 5.2: 21 + 24 ms, RTX
2080Ti) against a 40 ms action cycle. A world slowed by factor f stretches a cycle of c ms
of simulated time to c / f ms of wall time; one sample + update of m ms takes the thesis'
share of it when m / (c / f) = 45 / 40, so f = min(1, (45 / 40) * c / m).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Callable

import numpy as np
import torch

from asyncrl_ros.arms import get_arm
from asyncrl_ros.device import resolve
from asyncrl_ros.remote import make_agent, make_replay

THESIS_SAMPLE_UPDATE_MS = 21.0 + 24.0   # thesis Table 5.2, baseline, Seq-SAC
THESIS_CYCLE_MS = 40.0


def factor_for(measured_ms: float, cycle_ms: float) -> float:
    """The real-time factor that gives a sample + update of `measured_ms` the thesis' share."""
    if not measured_ms > 0:
        raise ValueError(f"measured cost must be > 0 ms, got {measured_ms}")
    return min(1.0, THESIS_SAMPLE_UPDATE_MS / THESIS_CYCLE_MS * cycle_ms / measured_ms)


def measure_sample_update_ms(cfg, iters: int = 3, warmup: int = 1) -> float:
    """Median wall time (ms) of one sample + update of the configured network, device and
    precision, with the learner's torch threads, from a small replay of random frames."""
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
    factor = factor_for(measured, cfg.task.action_cycle_ms)
    where = resolve(cfg.sac)
    return factor, measured, (
        f"real-time factor auto: one sample + update (batch {cfg.sac.batch_size}, "
        f"{cfg.image.width}x{cfg.image.height}) takes {measured:.1f} ms on {where.device} in "
        f"{where.precision}; the thesis took {THESIS_SAMPLE_UPDATE_MS:g} ms per "
        f"{THESIS_CYCLE_MS:g} ms cycle, so for a {cfg.task.action_cycle_ms:g} ms cycle the "
        f"world runs at {factor:.4g}" + (" (capped at 1)" if factor == 1.0 else ""))


def main(argv: list[str] | None = None) -> None:
    """`python -m asyncrl_ros.realtime CONFIG.yaml... [--set key=value]...`: measure in a process
    of its own (a CUDA context in the bringup would hold GPU memory all run) and print one JSON
    object {factor, measured_ms, message}."""
    from asyncrl_ros.config import load_config, parse_override
    args, sources = list(sys.argv[1:] if argv is None else argv), []
    while args:
        arg = args.pop(0)
        sources.append(parse_override(args.pop(0)) if arg == '--set' else arg)
    factor, measured, message = resolve_real_time_factor(load_config(*sources))
    print(json.dumps({'factor': factor, 'measured_ms': measured, 'message': message}))


if __name__ == '__main__':
    main()
