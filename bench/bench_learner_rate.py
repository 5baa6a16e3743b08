"""The async2 learner's update rate against the same learner on a batch it already holds.

Three batch sources per setting, each feeding its own SACAgent (asyncrl_ros.learning.remote.make_agent,
one torch thread like the async profiles) one warm-up update, then K timed updates:
- resident: one pre-sampled, pre-cropped batch held in this process;
- async2:   a replay_sampler-like producer process (spawn) owns a FrameReplay of random
            frames and keeps a BatchRing (learner_node.ring_spec, ring_slots slots) full by
            sampling + cropping; this process reads in place: acquire_read -> update ->
            release_read, as the learner node does;
- queue:    the same producer sends pickled batches through a multiprocessing.Queue
            (the seeds' ReLoD way); this process gets and updates.
Goal (issue): async2 updates/s >= 0.9 x resident. The K updates run back to back in
`--blocks` rounds of resident -> async2 -> queue, so changing load from other processes
hits all three alike; each update's thread CPU time is kept too, which that load does not
change, and the load average is printed with the figures.

Usage: python bench/bench_learner_rate.py [--quick] [--settings baseline hi-res] [--blocks 2]
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
from queue_feed import put_until_stopped  # noqa: E402
from asyncrl_ros.robot.arms import get_arm  # noqa: E402
from asyncrl_ros.run.config import load_config  # noqa: E402
from asyncrl_ros.nodes.learner_node import ring_spec  # noqa: E402
from asyncrl_ros.learning.remote import make_agent, make_replay  # noqa: E402
from asyncrl_ros.transport.shm_ring import BatchRing  # noqa: E402

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
        put_until_stopped(q, replay.sample(cfg.sac.batch_size, crop), stop)
    q.cancel_join_thread()   # batches still in the pipe may be dropped at exit


# ----- the learner side (this process) -----
def wait_ready(ready, proc, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready.wait(0.5):
        if not proc.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{what} producer did not start (exit code {proc.exitcode})")


class Resident:
    """One pre-sampled batch held in this process."""

    def __init__(self, cfg):
        crop = (cfg.sac.crop_height, cfg.sac.crop_width)
        self.batch = filled_replay(cfg).sample(cfg.sac.batch_size, crop)

    def get(self):
        return self.batch

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class Ring:
    """async2: batches read in place from the ring a producer process keeps full."""

    def __init__(self, cfg, cfg_dict: dict):
        proprio_dim, action_dim = dims(cfg)
        self.slots = cfg.asynchronous.ring_slots
        self.ring = BatchRing.create(f"asrl_lrate_{os.getpid()}_{uuid.uuid4().hex[:8]}",
                                     ring_spec(cfg, proprio_dim, action_dim), self.slots)
        ctx = mp.get_context("spawn")
        self.stop, ready = ctx.Event(), ctx.Event()
        self.proc = ctx.Process(target=produce_ring, args=(cfg_dict, self.ring.name, self.stop, ready))
        self.proc.start()
        wait_ready(ready, self.proc, "ring")

    def full(self) -> bool:
        return self.ring.pending() >= self.slots

    def get(self):
        views = self.ring.acquire_read(timeout=120)
        if views is None:
            raise RuntimeError("no batch from the ring producer in 120 s")
        return views

    def release(self) -> None:
        self.ring.release_read()

    def close(self) -> None:
        self.stop.set()
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.terminate()
        self.ring.close()
        self.ring.unlink()


class Queue:
    """The seeds' way: pickled batches through a multiprocessing.Queue."""

    def __init__(self, cfg, cfg_dict: dict):
        ctx = mp.get_context("spawn")
        self.q = ctx.Queue(maxsize=cfg.asynchronous.ring_slots)
        self.stop, ready = ctx.Event(), ctx.Event()
        self.proc = ctx.Process(target=produce_queue, args=(cfg_dict, self.q, self.stop, ready))
        self.proc.start()
        wait_ready(ready, self.proc, "queue")

    def full(self) -> bool:
        return self.q.full()

    def get(self):
        return self.q.get(timeout=120)

    def release(self) -> None:
        pass

    def close(self) -> None:
        self.stop.set()
        while True:   # drain, so the producer's feeder thread can exit
            try:
                self.q.get(timeout=0.5)
            except queue.Empty:
                break
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.terminate()


def timed_updates(agent, source, k: int) -> tuple[list[float], list[float]]:
    """Wall and this thread's CPU seconds of k back-to-back get + update + release."""
    wall, cpu = [], []
    for _ in range(k):
        t0, c0 = time.perf_counter(), time.thread_time()
        batch = source.get()
        agent.update(batch)
        del batch   # ring views must be gone before the slot is handed back
        source.release()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return wall, cpu


def measure(cfg, cfg_dict: dict, k: int, blocks: int) -> dict:
    """k updates per source, in `blocks` rounds of resident -> async2 -> queue, so that a
    change in other load on the machine hits every source alike."""
    proprio_dim, action_dim = dims(cfg)
    sources = {"resident": Resident(cfg)}
    try:
        sources["async2"] = Ring(cfg, cfg_dict)
        sources["queue"] = Queue(cfg, cfg_dict)
        agents = {name: make_agent(cfg, proprio_dim, action_dim) for name in sources}
        for name, source in sources.items():   # warm-up update each
            agents[name].update(source.get())
            source.release()
        times = {name: ([], []) for name in sources}
        ring = sources["async2"].ring
        waits0 = ring.stats()
        per_block = [k // blocks + (i < k % blocks) for i in range(blocks)]
        for n in per_block:
            for name, source in sources.items():
                # Producers refill before each block: none works during another's block,
                # and the ring starts full, as when learning starts in a run.
                while not all(getattr(s, "full", lambda: True)() for s in sources.values()):
                    time.sleep(0.01)
                wall, cpu = timed_updates(agents[name], source, n)
                times[name][0].extend(wall)
                times[name][1].extend(cpu)
        waits = ring.stats()
    finally:
        for source in sources.values():
            source.close()
    out = {}
    for name, (wall, cpu) in times.items():
        out[name] = {"updates_per_s": len(wall) / sum(wall), "median_ms": 1e3 * float(np.median(wall)),
                     "max_ms": 1e3 * max(wall), "cpu_ms_per_update": 1e3 * float(np.mean(cpu)),
                     "k": len(wall)}
    out["async2"]["reader_waits"] = waits.reader_waits - waits0.reader_waits
    out["async2"]["reader_wait_ms"] = (waits.reader_wait_s - waits0.reader_wait_s) * 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer timed updates (baseline 3, hi-res 2)")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--updates", type=int, help="timed updates per source (overrides the defaults)")
    ap.add_argument("--blocks", type=int, default=2, help="rounds the updates are split into")
    args = ap.parse_args()
    if args.updates is not None and args.updates < 1 or args.blocks < 1:
        raise SystemExit("--updates and --blocks must be >= 1")
    torch.set_num_threads(1)
    results = {}
    print(f"{os.cpu_count()} CPUs; learner (this process): 1 torch thread; producers: spawned "
          f"processes; goal: async2 / resident updates/s >= {GOAL_RATIO}", flush=True)
    for name in args.settings:
        w, h, ch, cw, b, k_full, k_quick = SETTINGS[name]
        k = args.updates or (k_quick if args.quick else k_full)
        cfg_dict = make_cfg(name)
        cfg = load_config(cfg_dict)
        load0 = os.getloadavg()[0]
        res = {"image": [w, h], "crop": [ch, cw], "batch": b, "ring_slots": cfg.asynchronous.ring_slots,
               **measure(cfg, cfg_dict, k, min(args.blocks, k))}
        base = res["resident"]
        for src in ("async2", "queue"):
            res[f"ratio_{src}"] = res[src]["updates_per_s"] / base["updates_per_s"]
            res[f"cpu_ratio_{src}"] = base["cpu_ms_per_update"] / res[src]["cpu_ms_per_update"]
        res["pass"] = res["ratio_async2"] >= GOAL_RATIO
        res["loadavg_1min"] = [load0, os.getloadavg()[0]]
        results[name] = res
        print(f"  {name} measured (1-min load average {load0:.2f} -> {os.getloadavg()[0]:.2f})",
              flush=True)

    print("\nupd/s: wall-clock rate (the goal's measure); cpu ms: the learner thread's own CPU "
          "per update (blind to other load); x resident: upd/s ratio (cpu ratio)")
    print(f"{'setting':<9} {'batch':>5} {'crop':>8} {'source':<9} {'upd/s':>7} {'median ms':>10} "
          f"{'max ms':>8} {'cpu ms':>8} {'k':>3} {'x resident':>17}")
    for name, res in results.items():
        crop = f"{res['crop'][0]}x{res['crop'][1]}"
        for src in ("resident", "async2", "queue"):
            r = res[src]
            ratio = (f"{res[f'ratio_{src}']:.3f} ({res[f'cpu_ratio_{src}']:.3f})"
                     if src != "resident" else "1")
            print(f"{name:<9} {res['batch']:>5} {crop:>8} {src:<9} {r['updates_per_s']:>7.3f} "
                  f"{r['median_ms']:>10.1f} {r['max_ms']:>8.1f} {r['cpu_ms_per_update']:>8.1f} "
                  f"{r['k']:>3} {ratio:>17}")
        a2 = res["async2"]
        print(f"{name:<9} async2 {'PASS' if res['pass'] else 'MISS'} (goal >= {GOAL_RATIO}); the "
              f"learner waited for the ring {a2['reader_waits']} times, {a2['reader_wait_ms']:.1f} ms "
              f"in all; load average {res['loadavg_1min'][0]:.2f} -> {res['loadavg_1min'][1]:.2f}")
    print(json.dumps({"bench": "learner_rate", "cpus": os.cpu_count(), "torch_threads": 1,
                      "goal_ratio": GOAL_RATIO, "quick": args.quick, "blocks": args.blocks,
                      "settings": results}))


if __name__ == "__main__":
    main()
