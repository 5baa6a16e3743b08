"""The async2 learner's update rate against the same learner on a batch it already holds.

Three phases per setting, each a fresh SACAgent (asyncrl_ros.remote.make_agent, one torch
thread like the async profiles), one warm-up update, then K timed updates back to back:
- resident: K updates on one pre-sampled, pre-cropped batch held in this process;
- async2:   a replay_sampler-like producer process (spawn) owns a FrameReplay of random
            frames and keeps a BatchRing (learner_node.ring_spec, ring_slots slots) full by
            sampling + cropping; this process reads in place: acquire_read -> update ->
            release_read, as the learner node does;
- queue:    the same producer sends pickled batches through a multiprocessing.Queue
            (the seeds' ReLoD way); this process gets and updates.
Goal (issue): async2 rate >= 0.9 x resident. Phases run one after another, so other load
on the machine shows up as noise; the load average is printed with the figures.

Usage: python bench/bench_learner_rate.py [--quick] [--settings baseline hi-res]
The very last line printed is one JSON object of the figures.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from asyncrl_ros.arms import get_arm  # noqa: E402
from asyncrl_ros.config import load_config  # noqa: E402
from asyncrl_ros.nodes.learner_node import ring_spec  # noqa: E402
from asyncrl_ros.remote import make_agent, make_replay  # noqa: E402
from asyncrl_ros.shm_ring import BatchRing  # noqa: E402

GOAL_RATIO = 0.9
# name -> (width, height, crop_h, crop_w, batch, K full, K quick)
SETTINGS = {"baseline": (160, 90, 88, 156, 128, 8, 3), "hi-res": (320, 180, 176, 314, 80, 4, 2)}
FILL = 2000          # transitions in the producer's replay (distinct random frames)
EPISODE_STEPS = 100  # 4 s episodes at 40 ms
# The replay's arrays are allocated lazily, but 10^4 keeps hi-res virtual memory modest;
# sampling cost depends on what is stored, not on the capacity.
REPLAY_CAPACITY = 10_000


def make_cfg(name: str) -> dict:
    w, h, ch, cw, b, _, _ = SETTINGS[name]
    return {"mode": "async2", "image": {"width": w, "height": h},
            "sac": {"batch_size": b, "crop_height": ch, "crop_width": cw, "torch_threads": 1,
                    "replay_capacity": REPLAY_CAPACITY}}


def dims(cfg) -> tuple[int, int]:
    n = get_arm(cfg.arm).n_actuated
    return 3 * n, n   # proprio (positions, velocities, previous action), action


def filled_replay(cfg):
    proprio_dim, action_dim = dims(cfg)
    replay = make_replay(cfg, proprio_dim, action_dim)
    rng = np.random.default_rng(0)
    shape = (3, cfg.image.height, cfg.image.width)
    for i in range(FILL):
        if i % EPISODE_STEPS == 0:
            replay.start_episode(rng.integers(0, 256, shape, dtype=np.uint8),
                                 rng.normal(size=proprio_dim).astype(np.float32))
        replay.add(rng.uniform(-1, 1, action_dim), rng.normal(),
                   rng.integers(0, 256, shape, dtype=np.uint8),
                   rng.normal(size=proprio_dim).astype(np.float32), terminal=False)
    return replay


# ----- producers (spawned processes) -----
def produce_ring(cfg_dict: dict, name: str, stop, ready) -> None:
    """What replay_sampler's run loop does, minus the transitions topic."""
    cfg = load_config(cfg_dict)
    replay = filled_replay(cfg)
    proprio_dim, action_dim = dims(cfg)
    ring = BatchRing.attach(name, ring_spec(cfg, proprio_dim, action_dim),
                            cfg.asynchronous.ring_slots)
    crop = (cfg.sac.crop_height, cfg.sac.crop_width)
    ready.set()
    while not stop.is_set():
        slot = ring.acquire_write(timeout=0.02)
        if slot is None:
            continue
        batch = replay.sample(cfg.sac.batch_size, crop)
        for key, value in batch.items():
            slot[key][...] = value
        slot["counts"][:] = (FILL, 0)
        del slot
        ring.commit_write()
    ring.close()


def produce_queue(cfg_dict: dict, q, stop, ready) -> None:
    cfg = load_config(cfg_dict)
    replay = filled_replay(cfg)
    crop = (cfg.sac.crop_height, cfg.sac.crop_width)
    ready.set()
    while not stop.is_set():
        batch = replay.sample(cfg.sac.batch_size, crop)
        while not stop.is_set():
            try:
                q.put(batch, timeout=0.1)
                break
            except queue.Full:
                pass
    q.cancel_join_thread()   # batches still in the pipe may be dropped at exit


# ----- the learner side (this process) -----
def timed_updates(agent, get, release, k: int) -> dict:
    """One warm-up update, then k timed ones; each time covers get + update + release."""
    batch = get()
    agent.update(batch)
    del batch
    release()
    times = []
    t_start = time.perf_counter()
    for _ in range(k):
        t0 = time.perf_counter()
        batch = get()
        agent.update(batch)
        del batch
        release()
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_start
    ms = np.asarray(times) * 1e3
    return {"updates_per_s": k / total, "median_ms": float(np.median(ms)),
            "max_ms": float(ms.max()), "k": k}


def wait_ready(ready, proc, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready.wait(0.5):
        if not proc.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{what} producer did not start (exit code {proc.exitcode})")


def phase_resident(cfg, k: int) -> dict:
    proprio_dim, action_dim = dims(cfg)
    batch = filled_replay(cfg).sample(cfg.sac.batch_size, (cfg.sac.crop_height, cfg.sac.crop_width))
    agent = make_agent(cfg, proprio_dim, action_dim)
    return timed_updates(agent, lambda: batch, lambda: None, k)


def phase_ring(cfg, cfg_dict: dict, k: int) -> dict:
    proprio_dim, action_dim = dims(cfg)
    slots = cfg.asynchronous.ring_slots
    ring = BatchRing.create(f"asrl_lrate_{os.getpid()}_{uuid.uuid4().hex[:8]}",
                            ring_spec(cfg, proprio_dim, action_dim), slots)
    ctx = mp.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=produce_ring, args=(cfg_dict, ring.name, stop, ready))
    proc.start()
    try:
        wait_ready(ready, proc, "ring")
        while ring.pending() < slots:   # as in a run: the sampler fills the ring first
            time.sleep(0.01)
        agent = make_agent(cfg, proprio_dim, action_dim)
        waits0 = ring.stats()

        def get():
            views = ring.acquire_read(timeout=120)
            if views is None:
                raise RuntimeError("no batch from the ring producer in 120 s")
            return views

        out = timed_updates(agent, get, ring.release_read, k)
        waits = ring.stats()
        out["reader_waits"] = waits.reader_waits - waits0.reader_waits
        out["reader_wait_ms"] = (waits.reader_wait_s - waits0.reader_wait_s) * 1e3
    finally:
        stop.set()
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
        ring.close()
        ring.unlink()
    return out


def phase_queue(cfg, cfg_dict: dict, k: int) -> dict:
    proprio_dim, action_dim = dims(cfg)
    ctx = mp.get_context("spawn")
    q = ctx.Queue(maxsize=cfg.asynchronous.ring_slots)
    stop, ready = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=produce_queue, args=(cfg_dict, q, stop, ready))
    proc.start()
    try:
        wait_ready(ready, proc, "queue")
        while not q.full():
            time.sleep(0.01)
        agent = make_agent(cfg, proprio_dim, action_dim)
        out = timed_updates(agent, lambda: q.get(timeout=120), lambda: None, k)
    finally:
        stop.set()
        while True:   # drain, so the producer's feeder thread can exit
            try:
                q.get(timeout=0.5)
            except queue.Empty:
                break
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer updates per phase (3 / 2)")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--updates", type=int, help="timed updates per phase (overrides K)")
    args = ap.parse_args()
    if args.updates is not None and args.updates < 1:
        raise SystemExit("--updates must be >= 1")
    torch.set_num_threads(1)
    results = {}
    print(f"{os.cpu_count()} CPUs, learner: 1 torch thread, producer: another process; "
          f"goal: async2 / resident >= {GOAL_RATIO}", flush=True)
    for name in args.settings:
        w, h, ch, cw, b, k_full, k_quick = SETTINGS[name]
        k = args.updates or (k_quick if args.quick else k_full)
        cfg_dict = make_cfg(name)
        cfg = load_config(cfg_dict)
        load0 = os.getloadavg()[0]
        res = {"image": [w, h], "crop": [ch, cw], "batch": b, "ring_slots": cfg.asynchronous.ring_slots,
               "resident": phase_resident(cfg, k), "async2": phase_ring(cfg, cfg_dict, k),
               "queue": phase_queue(cfg, cfg_dict, k)}
        base = res["resident"]["updates_per_s"]
        res["ratio_async2"] = res["async2"]["updates_per_s"] / base
        res["ratio_queue"] = res["queue"]["updates_per_s"] / base
        res["pass"] = res["ratio_async2"] >= GOAL_RATIO
        res["loadavg_1min"] = [load0, os.getloadavg()[0]]
        results[name] = res
        print(f"  {name} done (load average {load0:.2f} -> {os.getloadavg()[0]:.2f})", flush=True)

    print(f"\n{'setting':<9} {'batch':>5} {'crop':>8} {'source':<9} {'upd/s':>7} {'median ms':>10} "
          f"{'max ms':>8} {'k':>3} {'x resident':>10}")
    for name, res in results.items():
        crop = f"{res['crop'][0]}x{res['crop'][1]}"
        for src, ratio in (("resident", 1.0), ("async2", res["ratio_async2"]),
                           ("queue", res["ratio_queue"])):
            r = res[src]
            print(f"{name:<9} {res['batch']:>5} {crop:>8} {src:<9} {r['updates_per_s']:>7.3f} "
                  f"{r['median_ms']:>10.1f} {r['max_ms']:>8.1f} {r['k']:>3} {ratio:>10.3f}")
        a2 = res["async2"]
        print(f"{name:<9} async2 {'PASS' if res['pass'] else 'MISS'} (goal >= {GOAL_RATIO}); "
              f"learner waited for the ring {a2['reader_waits']} times, {a2['reader_wait_ms']:.1f} ms")
    print(json.dumps({"bench": "learner_rate", "cpus": os.cpu_count(), "torch_threads": 1,
                      "goal_ratio": GOAL_RATIO, "quick": args.quick, "settings": results}))


if __name__ == "__main__":
    main()
