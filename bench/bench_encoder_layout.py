"""The encoder's memory layout: one SAC update with the conv input in NCHW against
channels-last, side by side (asyncrl_ros.agent.networks.Encoder.memory_format).

For each setting two agents built from the same seed get the same batches; the layouts
alternate update by update, so load from other processes hits both alike. Reported: median
wall ms and CPU ms (all threads) of the update, the speed-up, and the largest difference of
the two agents' losses after the timed updates (same maths: only float rounding differs).

    python bench/bench_encoder_layout.py [--iters K] [--threads N] [--device cpu|cuda]

Last line: one JSON object, per setting nchw_ms, channels_last_ms, speedup, cputime_speedup,
max_loss_diff.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from asyncrl_ros.robot.arms import get_arm  # noqa: E402
from asyncrl_ros.run.profiles import resolve  # noqa: E402
from asyncrl_ros.learning.realtime import filled_replay  # noqa: E402
from asyncrl_ros.learning.remote import make_agent  # noqa: E402

# The simulated Panda's settings, as the profiles compose them (network, batch, image, crop).
PROFILE = "franka_sim_async2"
SETTINGS = ("quick", "baseline")
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(name: str, device: str, iters: int, warmup: int = 3) -> dict:
    cfg = resolve(PROFILE, name, overrides=[{"sac": {"device": device, "precision": "fp32"}}])[1]
    n = get_arm(cfg.arm).n_actuated
    agents = {}
    for layout, fmt in LAYOUTS.items():
        agents[layout] = agent = make_agent(cfg, 3 * n, n)
        for encoder in (agent.encoder, agent.encoder_target):
            encoder.memory_format = fmt
    first = next(iter(agents.values()))
    replay = filled_replay(cfg, 3 * n, n, first.device)
    crop = (cfg.sac.crop_height, cfg.sac.crop_width)
    times = {k: {"wall": [], "cpu": []} for k in agents}
    losses = {k: [] for k in agents}
    for i in range(warmup + iters):
        batch = replay.sample(cfg.sac.batch_size, crop)
        for layout, agent in agents.items():
            sync(agent.device)
            t0, c0 = time.perf_counter(), time.process_time()
            metrics = agent.update(batch)   # host floats: device work is inside the time
            t1, c1 = time.perf_counter(), time.process_time()
            losses[layout].append(metrics["critic_loss"])
            if i >= warmup:
                times[layout]["wall"].append((t1 - t0) * 1e3)
                times[layout]["cpu"].append((c1 - c0) * 1e3)
    med = {k: {m: float(np.median(v)) for m, v in t.items()} for k, t in times.items()}
    a, b = np.array(losses["nchw"]), np.array(losses["channels_last"])
    return {"nchw_ms": med["nchw"]["wall"], "channels_last_ms": med["channels_last"]["wall"],
            "speedup": med["nchw"]["wall"] / med["channels_last"]["wall"],
            "cputime_speedup": med["nchw"]["cpu"] / med["channels_last"]["cpu"],
            "max_loss_diff": float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-6)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30, help="timed updates per layout")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for name in SETTINGS:
        results[name] = run(name, args.device, args.iters if name == "quick" else max(5, args.iters // 3))
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(f"\nOne SAC update, median of the timed updates ({args.device}, torch threads {args.threads}, fp32)")
    header = f"{'setting':<10}{'NCHW ms':>10}{'ch-last ms':>12}{'speed-up':>10}{'CPU-time x':>12}{'loss rel diff':>15}"
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(f"{name:<10}{r['nchw_ms']:>10.1f}{r['channels_last_ms']:>12.1f}{r['speedup']:>10.2f}"
              f"{r['cputime_speedup']:>12.2f}{r['max_loss_diff']:>15.2e}")
    print("(the same batches to two agents from one seed; loss rel diff: the largest relative "
          "difference of their critic losses, float rounding only)")
    print(json.dumps({"bench": "encoder_layout", "device": args.device, "threads": args.threads,
                      "iters": args.iters, "settings": results}))


if __name__ == "__main__":
    main()
