"""BatchRing across real spawned processes: no torn, repeated, missing or reordered batch."""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import random
import subprocess
import sys
import textwrap
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncrl_ros.transport.shm_ring import BatchRing

REPO = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_S = 60.0  # generous: the 2-core CI box is shared


def unique_name() -> str:
    return f"asrl_t_{os.getpid()}_{uuid.uuid4().hex[:10]}"


def force_unlink(name: str) -> None:
    """Remove a segment a failed test may have left behind (attach+unlink keeps the tracker even)."""
    try:
        shm = SharedMemory(name=name)
    except FileNotFoundError:
        return
    shm.close()
    shm.unlink()


@contextlib.contextmanager
def owned_ring(spec, n_slots):
    name = unique_name()
    ring = BatchRing.create(name, spec, n_slots)
    try:
        yield ring
    finally:
        with contextlib.suppress(Exception):
            ring.close()
        force_unlink(name)


@pytest.fixture
def names():
    made: list[str] = []

    def make() -> str:
        made.append(unique_name())
        return made[-1]

    yield make
    for n in made:
        force_unlink(n)


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        yield ex


def stamp(i: int, k: int) -> int:
    """Value of array ``k`` in batch ``i``: exact in every dtype used, differs between nearby i and k."""
    return (7 * i + 3 + 11 * k) % 127


# ----- child-process roles (module level so spawn can import them) -----
def produce(name, spec, n_slots, n_batches, max_sleep, seed) -> dict:
    rng = random.Random(seed)
    ring = BatchRing.attach(name, spec, n_slots)
    for i in range(n_batches):
        views = ring.acquire_write(timeout=CHILD_TIMEOUT_S)
        assert views is not None, f"producer timed out at batch {i}"
        for k, key in enumerate(sorted(spec)):
            views[key][...] = stamp(i, k)
            if max_sleep:  # a slow fill widens the window in which a broken ring tears a batch
                time.sleep(rng.uniform(0, max_sleep))
        del views
        assert ring.commit_write() == i
    st_ = ring.stats()
    ring.close()
    return {"written": st_.written, "writer_waits": st_.writer_waits}


def consume(name, spec, n_slots, n_batches, max_sleep, seed) -> dict:
    rng = random.Random(seed)
    ring = BatchRing.attach(name, spec, n_slots)
    seqs, errors = [], []
    for _ in range(n_batches):
        views = ring.acquire_read(timeout=CHILD_TIMEOUT_S)
        if views is None:
            errors.append("reader timed out")
            break
        if max_sleep:  # hold the slot: a producer that overwrote it would show up below
            time.sleep(rng.uniform(0, max_sleep))
        seq = views["_seq"]
        seqs.append(seq)
        for k, key in enumerate(sorted(spec)):
            arr = views[key]
            if arr.size and not np.all(arr == stamp(seq, k)):
                errors.append(f"batch {seq} array {key}: values {np.unique(arr)[:4]} != {stamp(seq, k)}")
        del views, arr
        ring.release_read()
    extra = ring.acquire_read(timeout=0)
    if extra is not None:
        errors.append(f"extra batch {extra['_seq']} after the last one")
        del extra
    st_ = ring.stats()
    ring.close()
    return {"seqs": seqs, "errors": errors[:5], "reader_waits": st_.reader_waits}


def run_pair(pool, spec, n_slots, n_batches, child_is_producer, prod_sleep, cons_sleep, seed=0):
    """Owner in this process; one role in a spawned worker, the other here, concurrently."""
    with owned_ring(spec, n_slots) as ring:
        args_p = (ring.name, spec, n_slots, n_batches, prod_sleep, seed)
        args_c = (ring.name, spec, n_slots, n_batches, cons_sleep, seed + 1)
        if child_is_producer:
            fut = pool.submit(produce, *args_p)
            got = consume(*args_c)
            fut.result(timeout=CHILD_TIMEOUT_S * 2)
        else:
            fut = pool.submit(consume, *args_c)
            produce(*args_p)
            got = fut.result(timeout=CHILD_TIMEOUT_S * 2)
    assert got["errors"] == []
    assert got["seqs"] == list(range(n_batches))  # none missing, none repeated, in order
    return got


# ----- tests -----
def test_realistic_batch_across_processes(pool):
    spec = {"obs_image": ((8, 9, 88, 156), np.uint8), "obs_proprio": ((8, 21), np.float32),
            "action": ((8, 7), np.float32), "reward": ((8,), np.float32),
            "next_obs_image": ((8, 9, 88, 156), np.uint8), "not_done": ((8,), np.float32)}
    run_pair(pool, spec, n_slots=3, n_batches=60, child_is_producer=True, prod_sleep=2e-4, cons_sleep=5e-4)


dtypes = st.sampled_from([np.uint8, np.int32, np.float16, np.float32, np.float64])
shapes = st.lists(st.integers(1, 24), min_size=0, max_size=3).map(tuple)
specs = st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True),
                        st.tuples(shapes, dtypes), min_size=1, max_size=4)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs, n_slots=st.integers(1, 5), n_batches=st.integers(1, 40),
       child_is_producer=st.booleans(), prod_sleep=st.sampled_from([0.0, 1e-4, 1e-3]),
       cons_sleep=st.sampled_from([0.0, 1e-4, 1e-3]), seed=st.integers(0, 1000))
def test_ring_property_across_processes(pool, spec, n_slots, n_batches, child_is_producer,
                                        prod_sleep, cons_sleep, seed):
    run_pair(pool, spec, n_slots, n_batches, child_is_producer, prod_sleep, cons_sleep, seed)


SMALL = {"x": ((4, 3), np.uint8), "y": ((4,), np.float32)}


def small_batch(v: int) -> dict:
    return {"x": np.full((4, 3), v, np.uint8), "y": np.full(4, v, np.float32)}


def test_full_ring_times_out_and_empty_ring_returns_none():
    with owned_ring(SMALL, 2) as ring:
        assert ring.acquire_read(timeout=0) is None
        assert ring.acquire_read(timeout=0.02) is None
        assert ring.put(small_batch(1), timeout=0) and ring.put(small_batch(2), timeout=0)
        assert ring.acquire_write(timeout=0.02) is None
        assert ring.put(small_batch(3), timeout=0) is False
        assert ring.stats().writer_waits == 2 and ring.pending() == 2
        for want in (1, 2):
            views = ring.acquire_read(timeout=0)
            assert views["_seq"] == want - 1 and views["x"][0, 0] == want and views["y"][3] == want
            del views
            ring.release_read()
        assert ring.acquire_read(timeout=0) is None  # a released batch is never seen again
        st_ = ring.stats()
        assert (st_.written, st_.read, st_.reader_waits) == (2, 2, 3)
        assert ring.put(small_batch(4), timeout=0)  # slot freed by the reader is reused
        views = ring.acquire_read(timeout=0)
        assert views["_seq"] == 2 and views["x"][1, 2] == 4
        del views


def test_attach_with_wrong_spec_raises(names):
    name = names()
    with BatchRing.create(name, SMALL, 3) as ring:
        for spec, n in [({"x": ((4, 3), np.uint8)}, 3), ({**SMALL, "x": ((4, 4), np.uint8)}, 3),
                        ({**SMALL, "y": ((4,), np.float64)}, 3), (SMALL, 2)]:
            with pytest.raises(ValueError, match="different spec"):
                BatchRing.attach(name, spec, n)
        same = BatchRing.attach(name, dict(reversed(list(SMALL.items()))), 3)  # key order is irrelevant
        assert same.put(small_batch(5), timeout=0)
        views = ring.acquire_read(timeout=0)
        assert views["x"][0, 0] == 5
        del views
        same.close()
        with pytest.raises(RuntimeError, match="only the creating process"):
            same.unlink()
    with pytest.raises(FileNotFoundError):
        BatchRing.attach(name, SMALL, 3)


def test_attach_to_foreign_segment_raises(names):
    name = names()
    shm = SharedMemory(name=name, create=True, size=4096)
    try:
        with pytest.raises(ValueError, match="not an initialised BatchRing"):
            BatchRing.attach(name, SMALL, 1)
    finally:
        shm.close()


@pytest.mark.parametrize("spec, n_slots, match", [
    ({}, 1, "non-empty"), ({"_seq": ((1,), np.uint8)}, 1, "_seq"), ({"x": ((-1,), np.uint8)}, 1, "negative"),
    ({"x": ((1,), object)}, 1, "objects"), ({"x": ((1,), "not-a-dtype")}, 1, r"spec\['x'\]"),
    ({"x": 5}, 1, r"spec\['x'\]"), (SMALL, 0, "n_slots"), (SMALL, 1.5, "n_slots")])
def test_bad_spec_raises(names, spec, n_slots, match):
    with pytest.raises(ValueError, match=match):
        BatchRing.create(names(), spec, n_slots)


def test_put_validates_and_misuse_is_reported():
    with owned_ring(SMALL, 1) as ring:
        with pytest.raises(ValueError, match="keys"):
            ring.put({"x": np.zeros((4, 3), np.uint8)})
        with pytest.raises(ValueError, match=r"batch\['y'\] has shape"):
            ring.put({"x": np.zeros((4, 3), np.uint8), "y": np.zeros(5, np.float32)})
        with pytest.raises(TypeError):  # float -> uint8 would silently truncate
            ring.put({"x": np.full((4, 3), 1.5), "y": np.zeros(4, np.float32)})
        assert ring.pending() == 0 and ring.put(small_batch(9), timeout=0)  # failed puts used no slot
        with pytest.raises(RuntimeError, match="release_read"):
            ring.release_read()
        views = ring.acquire_read(timeout=0)
        with pytest.raises(RuntimeError, match="twice"):
            ring.acquire_read(timeout=0)
        with pytest.raises(RuntimeError, match="drop them"):
            ring.close()  # a live view would dangle
        del views
        ring.release_read()
        assert ring.acquire_write(timeout=0) is not None
        with pytest.raises(RuntimeError, match="twice"):
            ring.acquire_write(timeout=0)
        ring.commit_write()
        with pytest.raises(RuntimeError, match="without acquire_write"):
            ring.commit_write()


SCRIPT = """
import multiprocessing as mp, subprocess, sys
from multiprocessing.shared_memory import SharedMemory
import numpy as np
from asyncrl_ros.transport.shm_ring import BatchRing
SPEC = {"x": ((3,), np.uint8)}

def child(name):
    ring = BatchRing.attach(name, SPEC, 2)
    assert ring.put({"x": np.full(3, 7, np.uint8)}, timeout=5)
    ring.close()

if __name__ == "__main__":
    name = sys.argv[1]
    ring = BatchRing.create(name, SPEC, 2)
    p = mp.get_context("spawn").Process(target=child, args=(name,))  # shares this resource tracker
    p.start(); p.join(); assert p.exitcode == 0
    # an unrelated process with its own resource tracker attaches and exits
    code = f"from asyncrl_ros.transport.shm_ring import BatchRing; import numpy as np; " \\
           f"BatchRing.attach({name!r}, {{'x': ((3,), np.uint8)}}, 2).close()"
    subprocess.run([sys.executable, "-c", code], check=True)
    SharedMemory(name=name).close()  # still there: no attacher unlinked it
    views = ring.acquire_read(timeout=0)
    assert views["x"].tolist() == [7, 7, 7]
    del views
    ring.close(); ring.unlink()
    print("OK")
"""


def test_attachers_neither_unlink_nor_warn(tmp_path, names):
    script = tmp_path / "ring_tracker.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, str(script), names()], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "OK"
    # the resource tracker would print a KeyError traceback or a "leaked" warning
    assert "Traceback" not in res.stderr and "leaked" not in res.stderr, res.stderr
