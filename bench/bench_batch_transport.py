"""Mini-batch transport between two processes: shared-memory BatchRing vs pickled mp.Queue.

The seeds' ReLoD system moves every sampled mini-batch from the sampling process to the
update process through a (spawn-context) multiprocessing Queue, i.e. pickled and copied
several times. Here a producer process builds batches of the papers' shapes and a consumer
process (this one) receives them, wraps them with torch.from_numpy and touches one byte per
row, through both transports side by side. A last section times WeightStore.load_into for
an actor+encoder of the thesis' sizes while another process publishes.

Usage: python bench/bench_batch_transport.py [--seconds S]   (last stdout line: JSON)
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
from asyncrl_ros.transport.shm_ring import BatchRing  # noqa: E402
from asyncrl_ros.transport.shm_weights import WeightStore  # noqa: E402

# name -> (batch, crop height, crop width); frames 3 x RGB stacked = 9 channels
SETTINGS = {"baseline": (128, 88, 156), "hi-res": (80, 176, 314), "large-batch": (512, 88, 156)}
CHANNELS, PROPRIO, ACTION = 9, 21, 7
SLOTS = 4  # ring slots, and the same bound on the queue
WARMUP = 3
MAX_BATCHES = 200


def batch_spec(batch: int, h: int, w: int) -> dict:
    img, f32 = ((batch, CHANNELS, h, w), np.uint8), np.float32
    return {"obs_image": img, "obs_proprio": ((batch, PROPRIO), f32), "action": ((batch, ACTION), f32),
            "reward": ((batch,), f32), "next_obs_image": img, "next_obs_proprio": ((batch, PROPRIO), f32),
            "not_done": ((batch,), f32)}


def source_batch(spec: dict, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (rng.integers(0, 256, s, dtype=np.uint8) if d == np.uint8 else rng.random(s, dtype=np.float32))
            for k, (s, d) in spec.items()}


# ----- producers (run in a spawned process) -----
def produce_ring(name: str, spec: dict, stop) -> None:
    src = source_batch(spec)
    ring = BatchRing.attach(name, spec, SLOTS)
    while not stop.is_set():
        views = ring.acquire_write(timeout=0.1)
        if views is None:
            continue
        for k, v in views.items():  # the sampler's crop/gather writes straight into the slot
            np.copyto(v, src[k])
        del views, v  # a live view would keep the mapping from closing
        ring.commit_write()
    ring.close()


def produce_queue(q, spec: dict, stop) -> None:
    src = source_batch(spec)
    while not stop.is_set():
        batch = {k: v.copy() for k, v in src.items()}  # the sampler's fresh batch arrays
        put_until_stopped(q, batch, stop)
    q.cancel_join_thread()  # unsent batches may be dropped at exit


# ----- consumer (this process) -----
def touch(batch) -> int:
    t = {k: torch.from_numpy(v) for k, v in batch.items() if not k.startswith("_")}
    return int(t["obs_image"][:, 0, 0, 0].sum() + t["next_obs_image"][:, -1, -1, -1].sum())


def consume(kind: str, spec: dict, seconds: float) -> dict:
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    if kind == "ring":
        ring = BatchRing.create(f"asrl_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}", spec, SLOTS)
        proc = ctx.Process(target=produce_ring, args=(ring.name, spec, stop))

        def get() -> None:
            views = ring.acquire_read(timeout=60)
            touch(views)
            del views
            ring.release_read()
    else:
        q = ctx.Queue(maxsize=SLOTS)
        proc = ctx.Process(target=produce_queue, args=(q, spec, stop))

        def get() -> None:
            touch(q.get(timeout=60))
    proc.start()
    try:
        for _ in range(WARMUP):
            get()
        stamps = [time.perf_counter()]
        while len(stamps) <= MAX_BATCHES and stamps[-1] - stamps[0] < seconds:
            get()
            stamps.append(time.perf_counter())
    finally:
        stop.set()
        if kind == "ring":
            while ring.acquire_read(timeout=0.2) is not None:  # unblock a producer waiting for space
                ring.release_read()
        else:
            while True:
                try:
                    q.get(timeout=0.5)
                except queue.Empty:
                    break
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
        if kind == "ring":
            ring.close()
            ring.unlink()
    dt = np.diff(stamps) * 1e3
    return {"median_ms": float(np.median(dt)), "p99_ms": float(np.percentile(dt, 99)),
            "batches_per_s": float(len(dt) / (stamps[-1] - stamps[0])), "n": len(dt)}


# ----- weights -----
class ActorEncoder(torch.nn.Module):
    """Parameter shapes of the thesis' encoder (4 conv 3x3, 32 ch) and actor (2x1024 MLP)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = torch.nn.Sequential(*[torch.nn.Conv2d(CHANNELS if i == 0 else 32, 32, 3, s)
                                           for i, s in enumerate((2, 2, 2, 1))])
        # spatial softmax: 2 coordinates per channel, plus proprioception
        self.trunk = torch.nn.Sequential(torch.nn.Linear(2 * 32 + PROPRIO, 1024), torch.nn.ReLU(),
                                         torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                         torch.nn.Linear(1024, 2 * ACTION))


def publish_loop(name: str, period_s: float, stop, out) -> None:
    torch.set_num_threads(1)
    net = ActorEncoder()
    store = WeightStore.attach(name, net.state_dict())
    times = []
    while not stop.is_set():
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1e-3)
        t0 = time.perf_counter()
        store.publish(net.state_dict())
        times.append(time.perf_counter() - t0)
        time.sleep(period_s)
    store.close()
    out.put(times)


def bench_weights(seconds: float, period_s: float = 0.005) -> dict:
    ctx = mp.get_context("spawn")
    net = ActorEncoder()
    store = WeightStore.create(f"asrl_bench_w_{os.getpid()}_{uuid.uuid4().hex[:8]}", net.state_dict())
    stop, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=publish_loop, args=(store.name, period_s, stop, out))
    proc.start()
    loads, noops, held = [], [], 0
    try:
        while store.latest_version() == 0:
            time.sleep(1e-3)
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            v = store.load_into(net)
            dt = time.perf_counter() - t0
            (loads if v != held else noops).append(dt)
            held = v
            time.sleep(0.002)  # the policy's own work between checks
    finally:
        stop.set()
        pub = out.get(timeout=30)
        proc.join(timeout=30)
        store.close()
        store.unlink()
    n_params = sum(p.numel() for p in net.parameters())
    ms = lambda xs, q: float(np.percentile(np.asarray(xs) * 1e3, q)) if xs else float("nan")  # noqa: E731
    return {"params": n_params, "mbytes": store.nbytes / 1e6, "loads": len(loads),
            "load_into_median_ms": ms(loads, 50), "load_into_p99_ms": ms(loads, 99),
            "noop_median_us": ms(noops, 50) * 1e3, "publish_median_ms": ms(pub, 50)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="measuring time per setting and transport")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    print(f"{os.cpu_count()} CPUs; producer process -> consumer process; {SLOTS} slots / queue bound {SLOTS}")
    print(f"{'setting':<12} {'MB/batch':>8} {'transport':<9} {'median ms':>9} {'p99 ms':>8} {'batch/s':>8} {'n':>4}")
    for name, (b, h, w) in SETTINGS.items():
        spec = batch_spec(b, h, w)
        mb = BatchRing.nbytes(spec, 1) / 1e6
        res = {kind: consume(kind, spec, args.seconds) for kind in ("ring", "queue")}
        res["speedup"] = res["ring"]["batches_per_s"] / res["queue"]["batches_per_s"]
        res["mbytes_per_batch"] = mb
        results[name] = res
        for kind in ("ring", "queue"):
            r = res[kind]
            print(f"{name:<12} {mb:>8.1f} {kind:<9} {r['median_ms']:>9.2f} {r['p99_ms']:>8.2f} "
                  f"{r['batches_per_s']:>8.1f} {r['n']:>4}")
        print(f"{name:<12} ring/queue speed-up (batches/s): {res['speedup']:.1f}x")
    wr = bench_weights(min(args.seconds, 3.0))
    print(f"\nWeightStore, actor+encoder {wr['params'] / 1e6:.2f}M params ({wr['mbytes']:.1f} MB), "
          f"publisher process every 5 ms:")
    print(f"  load_into (version changed): median {wr['load_into_median_ms']:.3f} ms, "
          f"p99 {wr['load_into_p99_ms']:.3f} ms over {wr['loads']} loads; "
          f"unchanged: {wr['noop_median_us']:.1f} us; publish: {wr['publish_median_ms']:.3f} ms")
    print(json.dumps({"bench": "batch_transport", "cpus": os.cpu_count(), "slots": SLOTS,
                      "settings": results, "weights": wr}))


if __name__ == "__main__":
    main()
