"""Memory ordering of the shared-memory transport (asyncrl_ros.transport.shm_segment): the fence is a real
one where libatomic exists, a CPU whose ordering cannot be ensured refuses to open a segment,
and a writer and a reader process running flat out for a few seconds never hand over a payload
whose checksum does not match (ring: every batch; weights: every copy a reader keeps)."""
from __future__ import annotations

import ctypes.util
import multiprocessing as mp
import os
import time
import uuid
import zlib

import numpy as np
import pytest
import torch

from asyncrl_ros.transport import shm_segment
from asyncrl_ros.transport.shm_ring import BatchRing
from asyncrl_ros.transport.shm_weights import WeightStore

STRESS_S = 2.0          # each stress test runs its writer this long
JOIN_S = 120.0          # generous: the 2-core box is shared (spawn + torch import)
PAYLOAD = 64 * 1024
RING_SPEC = {"payload": ((PAYLOAD,), np.uint8), "crc": ((1,), np.uint64), "seq": ((1,), np.uint64),
             "last": ((1,), np.uint8)}


def unique_name(tag: str) -> str:
    return f"asrl_o{tag}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def test_fence_is_libatomics_where_present():
    shm_segment.fence()
    h = np.zeros(4, np.uint64)
    shm_segment.store_release(h, 1, 7)
    assert shm_segment.load_acquire(h, 1) == 7
    if ctypes.util.find_library("atomic"):
        assert "atomic_thread_fence" in shm_segment.ORDERING, shm_segment.ORDERING


def test_cpu_without_a_fence_refuses_shared_memory(monkeypatch):
    monkeypatch.setattr(shm_segment.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(shm_segment.ctypes.util, "find_library", lambda name: None)

    def no_lib(path):
        raise OSError(f"{path}: cannot open shared object file")
    monkeypatch.setattr(shm_segment.ctypes, "PyDLL", no_lib)
    fence, why = shm_segment._load_fence()
    assert fence is None and "libatomic" in why and "aarch64" in why
    monkeypatch.setattr(shm_segment, "_fence", None)
    monkeypatch.setattr(shm_segment, "ORDERING", why)
    with pytest.raises(RuntimeError, match="libatomic"):
        BatchRing.create(unique_name("r"), RING_SPEC, 2)
    # x86-64 without libatomic: TSO needs no fence instruction
    monkeypatch.setattr(shm_segment.platform, "machine", lambda: "x86_64")
    fence, why = shm_segment._load_fence()
    assert fence is not None and "TSO" in why


# ----- child roles (module level: spawn imports them) -----
def ring_producer(name: str, seconds: float) -> None:
    ring = BatchRing.attach(name, RING_SPEC, 2)
    rng = np.random.default_rng(os.getpid())
    deadline, seq = time.monotonic() + seconds, 0
    while True:
        last = time.monotonic() >= deadline
        views = ring.acquire_write(timeout=JOIN_S)
        assert views is not None, "consumer stopped reading"
        payload = views["payload"]
        payload[:] = rng.integers(0, 256, PAYLOAD, dtype=np.uint8)
        views["crc"][0] = zlib.crc32(payload)
        views["seq"][0] = seq
        views["last"][0] = last
        del views, payload
        ring.commit_write()
        seq += 1
        if last:
            break
    ring.close()


def weights_publisher(name: str, seconds: float) -> int:
    torch.set_num_threads(1)
    store = WeightStore.attach(name, weights_example())
    rng = np.random.default_rng(os.getpid())
    payloads = [torch.from_numpy(rng.integers(0, 256, PAYLOAD * 16, dtype=np.uint8)) for _ in range(8)]
    dicts = [{"payload": t, "crc": torch.tensor(zlib.crc32(t.numpy()))} for t in payloads]
    deadline, n = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        store.publish(dicts[n % len(dicts)])
        n += 1
        if n % 4 == 0:   # bursts (readers overlap publishes) and pauses (load_into completes)
            time.sleep(0.002)
    store.close()
    return n


def weights_example() -> dict[str, torch.Tensor]:
    return {"payload": torch.zeros(PAYLOAD * 16, dtype=torch.uint8),
            "crc": torch.zeros((), dtype=torch.int64)}


class Holder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for k, v in weights_example().items():
            self.register_buffer(k, v.clone())


def _spawn(target, *args) -> mp.Process:
    p = mp.get_context("spawn").Process(target=target, args=args, daemon=True)
    p.start()
    return p


def _finish(p: mp.Process) -> None:
    p.join(timeout=JOIN_S)
    if p.is_alive():
        p.terminate()
        p.join(5)
        pytest.fail("writer process did not finish")
    assert p.exitcode == 0, f"writer process failed (exit code {p.exitcode})"


# ----- stress tests -----
def test_ring_hands_over_every_payload_intact_under_load():
    name = unique_name("r")
    with BatchRing.create(name, RING_SPEC, 2) as ring:
        p = _spawn(ring_producer, name, STRESS_S)
        bad, n, deadline = [], 0, time.monotonic() + JOIN_S + STRESS_S
        try:
            while time.monotonic() < deadline:
                views = ring.acquire_read(timeout=1.0)
                if views is None:
                    if not p.is_alive():
                        break
                    continue
                seq, crc = views["_seq"], int(views["crc"][0])
                if int(views["seq"][0]) != seq or zlib.crc32(views["payload"]) != crc:
                    bad.append(seq)
                last = bool(views["last"][0])
                del views
                ring.release_read()
                n += 1
                if last:
                    break
        finally:
            _finish(p)
    assert bad == [], f"{len(bad)} of {n} batches failed their checksum, first {bad[:5]}"
    assert n >= 50, f"only {n} batches in {STRESS_S} s: not a stress test"


def test_weights_readers_keep_only_intact_payloads_under_load():
    name = unique_name("w")
    with WeightStore.create(name, weights_example()) as store:
        p = _spawn(weights_publisher, name, STRESS_S)
        buf, holder = store.new_buffer(), Holder()
        view = store.state_dict_view(buf)
        kept = loaded = retried = 0
        bad, last = [], {"try_read": 0, "load_into": 0}   # versions never go back, per reader
        try:
            while store.latest_version() == 0 and p.is_alive():
                time.sleep(1e-3)
            while p.is_alive() or kept + loaded == 0:
                v = store.try_read(buf)          # raw copy: kept only if not torn
                if v is None:
                    retried += 1
                else:
                    kept += 1
                    if zlib.crc32(view["payload"].numpy()) != int(view["crc"]):
                        bad.append(("try_read: checksum", v))
                    if v < last["try_read"]:
                        bad.append(("try_read: version went back", v))
                    last["try_read"] = v
                v = store.load_into(holder)      # in place: consistent whenever it returns
                if v:                            # 0: a publish was under way at the first call
                    loaded += 1
                    if zlib.crc32(holder.payload.numpy()) != int(holder.crc):
                        bad.append(("load_into: checksum", v))
                    if v < last["load_into"]:
                        bad.append(("load_into: version went back", v))
                    last["load_into"] = v
        finally:
            _finish(p)
        del view
    assert bad == [], f"torn or reordered copies kept: {bad[:5]}"
    assert kept >= 20 and loaded >= 20, (kept, loaded, retried)
