"""Sample + update cost of the paper's network per setting, device and precision.

Settings (1024-unit MLPs, 3 stacked frames): baseline 160x90 crop 88x156 batch 128; hires
320x180 crop 176x314 batch 80; large_batch 160x90 batch 512. For each: a fresh SACAgent
(asyncrl_ros.learning.remote.make_agent) and a replay of random frames (remote.make_replay: host
FrameReplay on the CPU, GPU-resident DeviceFrameReplay on CUDA), W warm-up then K timed
iterations of sample -> update, each part timed alone (the update returns host floats, so
device work is inside its time; GPU sampling is timed to a synchronize).

- CPU, fp32 and bf16 autocast, side by side: they alternate iteration by iteration, so load
  from other processes hits both alike; the CPU time of the update (all threads) is kept too
  (torch threads: --threads).
- CUDA, when present: the precision `auto` picks there, plus fp32; and the async2 path: a
  host batch to the device through DeviceBatchLoader (pinned, non-blocking).

Keys of the last line (one JSON object): cpu_fp32_ms, cpu_bf16_ms (median update),
cpu_bf16_speedup, cpu_sample_ms (host sampling) for the baseline, and the same per setting
under `settings`, with cuda_sample_ms, cuda_update_ms, cuda_update_plus_sample_ms,
cuda_fp32_update_ms and cuda_h2d_batch_ms when CUDA is present.

    python bench/bench_update.py [--quick] [--threads N] [--settings baseline hires]
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
from asyncrl_ros.run.config import load_config  # noqa: E402
from asyncrl_ros.agent.device import cpu_bf16_flags  # noqa: E402
from asyncrl_ros.learning.realtime import filled_replay  # noqa: E402
from asyncrl_ros.learning.remote import make_agent  # noqa: E402
from asyncrl_ros.transport.transfer import DeviceBatchLoader  # noqa: E402

# name -> (width, height, crop_h, crop_w, batch, (warm-up, timed) on the CPU, the same --quick)
SETTINGS = {
    "baseline": (160, 90, 88, 156, 128, (2, 5), (1, 2)),
    "hires": (320, 180, 176, 314, 80, (1, 2), (1, 1)),
    "large_batch": (160, 90, 88, 156, 512, (1, 2), (1, 1)),
}
CUDA_ITERS = (10, 50)   # GPU iterations are cheap


def config(name: str, device: str, precision: str):
    w, h, ch, cw, b = SETTINGS[name][:5]
    return load_config({"image": {"width": w, "height": h},
                        "sac": {"batch_size": b, "crop_height": ch, "crop_width": cw,
                                "device": device, "precision": precision}})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(name: str, device: str, precisions: tuple[str, ...], iters: tuple[int, int]) -> dict:
    """Per precision: median sample ms, update ms (wall) and update CPU ms (all threads).

    The precisions alternate iteration by iteration, so load from other processes hits them
    alike; CPU time, which that load barely changes, is kept beside the wall time."""
    runs = {}
    for precision in precisions:
        cfg = config(name, device, precision)
        n = get_arm(cfg.arm).n_actuated
        agent = make_agent(cfg, 3 * n, n)
        replay = filled_replay(cfg, 3 * n, n, agent.device)
        runs[precision] = (agent, replay, {"sample": [], "update": [], "cpu": []})
    crop = (cfg.sac.crop_height, cfg.sac.crop_width)
    warmup, timed = iters
    for i in range(warmup + timed):
        for agent, replay, times in runs.values():
            t0 = time.perf_counter()
            batch = replay.sample(cfg.sac.batch_size, crop)
            sync(agent.device)
            t1, c1 = time.perf_counter(), time.process_time()
            agent.update(batch)   # returns host floats: device work is included
            t2, c2 = time.perf_counter(), time.process_time()
            if i >= warmup:
                times["sample"].append((t1 - t0) * 1e3)
                times["update"].append((t2 - t1) * 1e3)
                times["cpu"].append((c2 - c1) * 1e3)
    out = {}
    for precision, (agent, _, times) in runs.items():
        out[precision] = {k + "_ms": float(np.median(v)) for k, v in times.items()}
        out[precision]["precision"] = agent.placement.precision
    agent = next(iter(runs.values()))[0]
    if agent.device.type == "cuda":
        # async2: a host batch (as from the shared-memory ring) through pinned memory.
        host = {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        loader = DeviceBatchLoader(agent.device)
        times = []
        for i in range(warmup + timed):
            t0 = time.perf_counter()
            loader(host)
            sync(agent.device)
            times.append((time.perf_counter() - t0) * 1e3)
        out["h2d_batch_ms"] = float(np.median(times[warmup:]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--no-cpu", action="store_true", help="CUDA figures only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    results: dict[str, dict] = {}
    for name in args.settings:
        iters = SETTINGS[name][6 if args.quick else 5]
        r = results[name] = {}
        if not args.no_cpu:
            cpu = run(name, "cpu", ("fp32", "bf16"), iters)
            fp32, bf16 = cpu["fp32"], cpu["bf16"]
            r |= {"cpu_sample_ms": fp32["sample_ms"], "cpu_fp32_ms": fp32["update_ms"],
                  "cpu_bf16_ms": bf16["update_ms"],
                  "cpu_bf16_speedup": fp32["update_ms"] / bf16["update_ms"],
                  "cpu_fp32_cputime_ms": fp32["cpu_ms"], "cpu_bf16_cputime_ms": bf16["cpu_ms"],
                  "cpu_bf16_speedup_cputime": fp32["cpu_ms"] / bf16["cpu_ms"]}
        if cuda:
            gpu = run(name, "cuda", ("auto", "fp32"), CUDA_ITERS)
            auto = gpu["auto"]
            r |= {"cuda_precision": auto["precision"], "cuda_sample_ms": auto["sample_ms"],
                  "cuda_update_ms": auto["update_ms"],
                  "cuda_update_plus_sample_ms": auto["sample_ms"] + auto["update_ms"],
                  "cuda_fp32_update_ms": gpu["fp32"]["update_ms"], "cuda_h2d_batch_ms": gpu["h2d_batch_ms"]}
        print(f"{name}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in r.items()), file=sys.stderr, flush=True)

    cpu_name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    print(f"\nSample + update, median ms (CPU: {cpu_name}, torch threads {args.threads}, native bf16: "
          f"{'/'.join(cpu_bf16_flags()) or 'none'}; CUDA: "
          f"{torch.cuda.get_device_name(0) if cuda else 'none'})")
    columns = [k for k in ("cpu_sample_ms", "cpu_fp32_ms", "cpu_bf16_ms", "cpu_bf16_speedup",
                           "cpu_fp32_cputime_ms", "cpu_bf16_cputime_ms", "cpu_bf16_speedup_cputime",
                           "cuda_sample_ms", "cuda_update_ms", "cuda_update_plus_sample_ms",
                           "cuda_fp32_update_ms", "cuda_h2d_batch_ms")
               if any(k in r for r in results.values())]
    header = f"{'setting':<12}" + "".join(f"{c.replace('_ms', ''):>{max(12, len(c) + 1)}}" for c in columns)
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        cells = [f"{r.get(c, float('nan')):>{max(12, len(c) + 1)}.{2 if 'speedup' in c else 1}f}" for c in columns]
        print(f"{name:<12}" + "".join(cells))
    print("(cpu_*: update only, the batch sampled on the host; cpu_bf16: torch.autocast bf16, "
          "parameters fp32; *_cputime: CPU time of all threads, which load from other processes "
          "barely changes; cuda_*: GPU-resident replay, precision 'auto')")
    print(f"load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    base = results.get("baseline", {})
    summary = {k: base[k] for k in ("cpu_fp32_ms", "cpu_bf16_ms", "cpu_bf16_speedup", "cpu_sample_ms",
                                    "cpu_bf16_speedup_cputime") if k in base}
    print(json.dumps({"bench": "update", "threads": args.threads, "quick": args.quick,
                      "cpu": cpu_name, "cpu_native_bf16": list(cpu_bf16_flags()),
                      "cuda": torch.cuda.get_device_name(0) if cuda else None,
                      **summary, "settings": results}))


if __name__ == "__main__":
    main()
