"""WeightStore: a reader in another process never keeps a torn copy; versions only grow."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import pytest
import torch

from asyncrl_ros.transport.shm_weights import _H_SEQ, WeightStore

N_VERSIONS = 150
CHILD_TIMEOUT_S = 120.0


def example_state_dict() -> dict[str, torch.Tensor]:
    """Mixed dtypes and a large tensor (a ~2 ms copy) so overlapping copies are frequent."""
    return {"big.weight": torch.zeros(600, 1024), "enc.conv.weight": torch.zeros(32, 9, 3, 3),
            "half": torch.zeros(513, dtype=torch.float16), "steps": torch.zeros((), dtype=torch.int64),
            "head.bias": torch.zeros(14)}


def filled(version: int) -> dict[str, torch.Tensor]:
    return {k: torch.full_like(v, version) for k, v in example_state_dict().items()}


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = torch.nn.Conv2d(9, 4, 3)
        self.head = torch.nn.Linear(1024, 600)  # ~2.4 MB: copies long enough to overlap publishes
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))


def fill_module(m: torch.nn.Module, version: int) -> dict[str, torch.Tensor]:
    return {k: torch.full_like(v, version) for k, v in m.state_dict().items()}


def values(sd) -> set[float]:
    return {float(x) for t in sd.values() for x in torch.unique(t.float())}


@pytest.fixture
def name():
    n = f"asrl_w_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    yield n
    try:
        shm = SharedMemory(name=n)
    except FileNotFoundError:
        return
    shm.close()
    shm.unlink()


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        yield ex


# ----- child-process roles -----
def publisher(name: str, n_versions: int, pause_s: float, module: bool) -> list[int]:
    torch.set_num_threads(1)
    example = Net().state_dict() if module else example_state_dict()
    store = WeightStore.attach(name, example)
    got, net = [], Net()
    for v in range(1, n_versions + 1):
        got.append(store.publish(fill_module(net, v) if module else filled(v)))
        if v % 2:  # alternate bursts and pauses: overlapping reads and idle re-reads both happen
            time.sleep(pause_s)
    store.close()
    return got


# ----- tests -----
def test_concurrent_reader_never_keeps_a_torn_copy(pool, name):
    store = WeightStore.create(name, example_state_dict())
    fut = pool.submit(publisher, name, N_VERSIONS, 0.0, False)
    into_sd, into_buf = example_state_dict(), store.new_buffer()
    buf_view = store.state_dict_view(into_buf)
    seen, misses, deadline = [], 0, time.monotonic() + CHILD_TIMEOUT_S
    while time.monotonic() < deadline:
        use_buf = len(seen) % 2 == 1
        v = store.try_read(into_buf if use_buf else into_sd)
        if v is None:
            misses += 1
        else:
            got = values(buf_view if use_buf else into_sd)
            assert got == {float(v)}, f"torn read: version {v} holds values {sorted(got)[:6]}"
            assert not seen or v >= seen[-1], f"version went back from {seen[-1]} to {v}"
            seen.append(v)
        if fut.done() and seen and seen[-1] == N_VERSIONS:
            break
    assert fut.result(timeout=CHILD_TIMEOUT_S) == list(range(1, N_VERSIONS + 1))
    assert seen and seen[-1] == N_VERSIONS and store.latest_version() == N_VERSIONS
    del buf_view
    store.close()
    store.unlink()


def test_load_into_changes_module_exactly_when_version_changes(pool, name):
    store = WeightStore.create(name, Net().state_dict())
    net = Net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert store.load_into(net) == 0  # nothing published yet: untouched
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    fut = pool.submit(publisher, name, N_VERSIONS, 0.002, True)
    held, changes, deadline = 0, 0, time.monotonic() + CHILD_TIMEOUT_S
    while held < N_VERSIONS and time.monotonic() < deadline:
        v = store.load_into(net)
        assert v >= held
        if v != held:
            changes += 1
            assert values(net.state_dict()) == {float(v)}, f"module torn at version {v}"
            # Scribble on the module: only a new version may overwrite it.
            with torch.no_grad():
                net.head.bias.fill_(-1.0)
        else:
            assert held == 0 or float(net.head.bias.detach()[0]) == -1.0, "module rewritten without a new version"
        held = v
    fut.result(timeout=CHILD_TIMEOUT_S)
    assert held == N_VERSIONS and changes >= 2
    store.close()
    store.unlink()


def test_versions_and_misuse_single_process(name):
    with WeightStore.create(name, example_state_dict()) as store:
        buf = store.new_buffer()
        assert store.latest_version() == 0 and store.try_read(buf) is None
        assert store.publish(filled(3)) == 1 and store.publish(filled(4)) == 2
        assert store.try_read(buf) == 2 and values(store.state_dict_view(buf)) == {4.0}
        with pytest.raises(ValueError, match="missing keys \\['big.weight'\\]"):
            store.publish({k: v for k, v in filled(1).items() if k != "big.weight"})
        with pytest.raises(ValueError, match="unexpected keys \\['extra'\\]"):
            store.publish({**filled(1), "extra": torch.zeros(1)})
        assert store.publish({**filled(5), "extra": torch.zeros(1)}, strict=False) == 3
        with pytest.raises(ValueError, match="half"):
            store.publish({**filled(1), "half": torch.zeros(513)})  # float32, layout says float16
        with pytest.raises(ValueError, match="head.bias"):
            store.publish({**filled(1), "head.bias": torch.zeros(15)})
        with pytest.raises(ValueError, match="uint8 numpy array"):
            store.try_read(np.empty(3, np.uint8))
        assert store.latest_version() == 3  # failed publishes did not count
        with pytest.raises(ValueError, match="different keys"):
            WeightStore.attach(name, {**example_state_dict(), "head.bias": torch.zeros(15)})
        reader = WeightStore.attach(name, example_state_dict())
        assert reader.try_read(buf) == 3 and values(store.state_dict_view(buf)) == {5.0}
        with pytest.raises(RuntimeError, match="only the creating process"):
            reader.unlink()
        reader.close()


def test_crashed_writer_is_survived(name):
    """A writer that dies mid-publish leaves the sequence odd: readers skip, the next publish heals."""
    with WeightStore.create(name, Net().state_dict()) as store:
        net = Net()
        assert store.publish(fill_module(net, 1)) == 1 and store.load_into(net) == 1
        with torch.no_grad():
            net.head.bias.fill_(-1.0)
        assert store.publish(fill_module(net, 2)) == 2
        store._hdr[_H_SEQ] += 1  # what a writer killed inside publish() leaves behind
        assert store.latest_version() == 2 and store.try_read(store.new_buffer()) is None
        assert store.load_into(net) == 1 and float(net.head.bias.detach()[0]) == -1.0  # untouched
        assert store.publish(fill_module(net, 3)) == 3  # versions still count completed publishes
        assert store.load_into(net) == 3 and values(net.state_dict()) == {3.0}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_publish_and_load(name):
    with WeightStore.create(name, Net().state_dict()) as store:
        src, dst = Net().cuda(), Net().cuda()
        assert store.publish(fill_module(src, 7)) == 1  # device tensors go via pinned staging
        assert store.publish({k: v.cpu() for k, v in fill_module(src, 8).items()}) == 2
        assert store.load_into(dst) == 2 and values(dst.state_dict()) == {8.0}
        assert all(v.is_cuda for v in dst.state_dict().values())
