"""Per-component times of one Seq-SAC cycle on this machine, in the layout of thesis Table 5.2.

Components: action (SACAgent.act), sampling (FrameReplay.sample with random crop), update
(SACAgent.update), environment (PandaWorld step of 40 ms + render; 'n/a' where the world is not
importable). Settings: baseline 160x90, batch 128; hi-res 320x180 (crop 176x314), batch 80.
The very last line printed is one JSON object of the figures.

    python bench/bench_components.py [--threads 2] [--updates 5] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from asyncrl_ros.agent.replay import FrameReplay  # noqa: E402
from asyncrl_ros.agent.sac import SACAgent, SACConfig  # noqa: E402

PROPRIO_DIM, ACTION_DIM = 21, 7  # Panda: joint positions, velocities, previous action; 7 joint velocities
SETTINGS = {  # name: (width, height, crop_h, crop_w, batch)
    "baseline": (160, 90, 88, 156, 128),
    "hi-res": (320, 180, 176, 314, 80),
}
THESIS_MS = {  # Table 5.2, Seq-SAC on an RTX 2080Ti (baseline / high-res)
    "action": {"baseline": 2, "hi-res": 3}, "sampling": {"baseline": 21, "hi-res": 44},
    "update": {"baseline": 24, "hi-res": 65}, "environment": {"baseline": 5, "hi-res": 6},
}


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock milliseconds of each call (results are host values, so GPU work is included)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def summary(times: list[float] | None) -> dict | None:
    if not times:
        return None
    return {"median_ms": float(np.median(times)), "p99_ms": float(np.percentile(times, 99)), "n": len(times)}


def fill_replay(replay: FrameReplay, n: int, episode_len: int, rng: np.random.Generator) -> None:
    frame_shape = replay.frame_shape
    frames = rng.integers(0, 256, (64, *frame_shape), dtype=np.uint8)  # recycled: content is irrelevant
    for i in range(n):
        if i % episode_len == 0:
            replay.start_episode(frames[i % 64], rng.normal(size=PROPRIO_DIM))
        replay.add(rng.uniform(-1, 1, ACTION_DIM), rng.normal(), frames[(i + 1) % 64],
                   rng.normal(size=PROPRIO_DIM), terminal=False)


def measure_environment(width: int, height: int, repeats: int) -> list[float] | None:
    """Hook for the simulated world: step 40 ms + render, or None where it is unavailable."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        from asyncrl_ros.sim.panda_world import PandaWorld
        world = PandaWorld(image_width=width, image_height=height)
    except Exception as e:  # missing module, no GL: the column reads n/a
        print(f"environment: n/a ({type(e).__name__}: {e})", file=sys.stderr)
        return None
    try:
        world.set_joint_velocity(np.zeros(7))
        return timed(lambda: (world.step(0.04), world.render()), repeats, warmup=3)
    finally:
        getattr(world, "close", lambda: None)()


def bench_setting(name: str, args, rng: np.random.Generator) -> dict:
    width, height, crop_h, crop_w, batch = SETTINGS[name]
    cfg = SACConfig(batch_size=batch, crop_height=crop_h, crop_width=crop_w)
    agent = SACAgent(cfg, (3 * cfg.frame_stack, height, width), PROPRIO_DIM, ACTION_DIM, device=args.device)
    replay = FrameReplay(cfg.replay_capacity, (3, height, width), PROPRIO_DIM, ACTION_DIM, cfg.frame_stack)
    fill_replay(replay, args.transitions, episode_len=150, rng=rng)

    stack = rng.integers(0, 256, (3 * cfg.frame_stack, height, width), dtype=np.uint8)
    proprio = rng.normal(size=PROPRIO_DIM).astype(np.float32)
    action = timed(lambda: agent.act(stack, proprio, deterministic=False), args.actions, warmup=3)
    sampling = timed(lambda: replay.sample(batch, (crop_h, crop_w)), args.samples, warmup=2)
    batches = iter([replay.sample(batch, (crop_h, crop_w)) for _ in range(args.updates + 1)])
    update = timed(lambda: agent.update(next(batches)), args.updates, warmup=1)
    environment = measure_environment(width, height, args.actions)
    return {"action": summary(action), "sampling": summary(sampling), "update": summary(update),
            "environment": summary(environment), "replay_nbytes": replay.nbytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--actions", type=int, default=30)
    parser.add_argument("--transitions", type=int, default=2000)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    results = {name: bench_setting(name, args, rng) for name in args.settings}

    print(f"\nComponent times, ms (device={args.device}, torch threads={args.threads}); "
          f"thesis = Seq-SAC on RTX 2080Ti (Table 5.2)")
    header = f"{'component':<12}" + "".join(f"{n + ' median':>16}{'p99':>10}{'thesis':>8}" for n in args.settings)
    print(header)
    print("-" * len(header))
    for component in ("action", "sampling", "update", "environment"):
        row = f"{component:<12}"
        for name in args.settings:
            s = results[name][component]
            cells = ("n/a", "n/a") if s is None else (f"{s['median_ms']:.1f}", f"{s['p99_ms']:.1f}")
            row += f"{cells[0]:>16}{cells[1]:>10}{THESIS_MS[component][name]:>8}"
        print(row)
    print(f"(p99 over few repetitions is close to the max; updates timed: {args.updates}, "
          f"samples: {args.samples}, actions/env steps: {args.actions})")
    print(json.dumps({"bench": "components", "device": args.device, "threads": args.threads,
                      "settings": results, "thesis_ms": THESIS_MS}))


if __name__ == "__main__":
    main()
