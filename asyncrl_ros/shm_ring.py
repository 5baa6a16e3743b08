"""Single-producer/single-consumer ring of mini-batch slots in POSIX shared memory.

The replay sampler writes each mini-batch straight into a preallocated slot (the only copy);
the learner reads numpy views of that slot (zero-copy) and releases it when done. This
replaces the pickled ``multiprocessing.Queue`` of the seeds' ReLoD system.

Memory-ordering assumption (why no locks are needed for SPSC): every counter is an aligned
uint64 in the shared block, written by exactly one process, and always written *after* the
data it guards (producer: slot data -> slot seq -> write index; consumer: done reading ->
read index). CPython executes those statements in order and calls into numpy/memcpy are
opaque to the compiler, and x86-64 is TSO: stores become visible to other cores in program
order (glibc's non-temporal memcpy path ends with ``sfence``) and loads are not reordered
with other loads, so a consumer that sees ``write_idx > i`` also sees slot ``i``'s data. An
aligned 8-byte store/load is atomic on x86-64, so a counter is never seen half-written. On
weakly ordered CPUs (ARM) this would need explicit fences, hence the warning below.
"""
from __future__ import annotations

import hashlib
import os
import platform
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

Spec = Mapping[str, tuple[tuple[int, ...], Any]]

_ALIGN = 64  # cache line: keeps counters of the two sides on different lines
_MAGIC = int.from_bytes(b"ASRLRNG1", "little")
_LAYOUT_VERSION = 1
# Header words (uint64 index); write and read index each own a cache line.
_H_MAGIC, _H_LAYOUT, _H_HASH, _H_SLOTS, _H_SLOT_BYTES = 0, 1, 2, 3, 4
_H_WRITE = _ALIGN // 8
_H_READ = 2 * _ALIGN // 8
_HEADER_BYTES = 4 * _ALIGN
_MAX_SLEEP_S = 5e-4
_MIN_SLEEP_S = 1e-5

_tracker_lock = threading.Lock()
_warned_arch = False


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _check_arch() -> None:
    global _warned_arch
    if not _warned_arch and platform.machine().lower() not in ("x86_64", "amd64"):
        _warned_arch = True
        warnings.warn(
            f"asyncrl_ros shared-memory transport assumes x86-64 store ordering (TSO); "
            f"on {platform.machine()} a reader may see a counter before its data",
            RuntimeWarning, stacklevel=3)


def open_shm(name: str, size: int, create: bool) -> SharedMemory:
    """Create (tracked, so a crashed owner still frees it) or attach (untracked) a segment.

    Python 3.11 registers attached segments with the resource tracker too, which then
    unlinks them when the *attaching* process exits. Unregistering after the fact is not
    enough: a spawn child shares its parent's tracker, so it would drop the owner's
    registration. So the attacher never registers at all.
    """
    _check_arch()
    if create:
        if size <= 0:
            raise ValueError(f"shared memory size must be positive, got {size}")
        return SharedMemory(name=name, create=True, size=size)
    if sys.version_info >= (3, 13):
        shm = SharedMemory(name=name, create=False, track=False)
    else:
        shm = _attach_untracked(name)
    if shm.size < size:
        shm.close()
        raise ValueError(f"shared memory {name!r} has {shm.size} bytes, layout needs {size}")
    return shm


def _attach_untracked(name: str) -> SharedMemory:
    with _tracker_lock:  # 3.11/3.12 have no track=False: hide this one registration
        orig = resource_tracker.register

        def _skip(rname: str, rtype: str) -> None:
            if rtype != "shared_memory" or rname.lstrip("/") != name.lstrip("/"):
                orig(rname, rtype)

        resource_tracker.register = _skip
        try:
            shm = SharedMemory(name=name, create=False)
        finally:
            resource_tracker.register = orig
    return shm


def segment_id(name: str) -> int | None:
    """Identity (inode) of the segment that `name` names now, or None if none does.

    A process that restarts (a learner or replay_sampler brought back by the bringup)
    creates a new segment under the old name; a peer still mapping the old one compares
    this with `mapped_id` of its mapping to notice and re-attach."""
    try:
        return os.stat(f"/dev/shm/{name.lstrip('/')}").st_ino
    except FileNotFoundError:
        return None


def mapped_id(shm: SharedMemory) -> int:
    return os.fstat(shm._fd).st_ino


def unlink_stale(name: str) -> bool:
    """Remove a segment left under `name` by a killed owner of the same run (its creator
    is gone, so nobody else unlinks it); True if there was one."""
    try:
        os.unlink(f"/dev/shm/{name.lstrip('/')}")
        return True
    except FileNotFoundError:
        return False


def close_shm(shm: SharedMemory, what: str) -> None:
    """Close, or raise RuntimeError (mapping kept intact) while views of it are alive."""
    try:
        shm.close()
    except BufferError as e:
        if shm._buf is None:  # close() got as far as releasing .buf: restore it as __init__ does
            shm._buf = memoryview(shm._mmap)
        raise RuntimeError(
            f"cannot close {what}: numpy/torch views of it are still alive; "
            "drop them (del views) before close()") from e


def normalize_spec(spec: Spec) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Validate a spec and return it sorted by name (layout does not depend on dict order)."""
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f"spec must be a non-empty mapping name -> (shape, dtype), got {spec!r}")
    for name in spec:
        if not isinstance(name, str) or not name or name.startswith("_"):
            raise ValueError(f"spec name {name!r} must be a non-empty str not starting with '_'")
    out = {}
    for name in sorted(spec):
        try:
            shape, dtype = spec[name]
            shape = tuple(int(d) for d in shape)
            dtype = np.dtype(dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(f"spec[{name!r}] must be (shape tuple, numpy dtype), got {spec[name]!r}") from e
        if any(d < 0 for d in shape):
            raise ValueError(f"spec[{name!r}] has a negative dimension: {shape}")
        if dtype.hasobject:
            raise ValueError(f"spec[{name!r}] dtype {dtype} holds Python objects")
        out[name] = (shape, dtype)
    return out


def spec_hash(parts: list[str]) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest(), "little")


def wait_until(cond: Callable[[], bool], timeout: float | None) -> tuple[bool, bool]:
    """Poll ``cond`` with exponential sleeps (10 us .. 0.5 ms). Returns (ok, had_to_wait)."""
    if cond():
        return True, False
    if timeout is not None and timeout <= 0:
        return False, True
    deadline = None if timeout is None else time.monotonic() + timeout
    sleep = _MIN_SLEEP_S
    while True:
        time.sleep(sleep)
        if cond():
            return True, True
        if deadline is not None and time.monotonic() >= deadline:
            return False, True
        sleep = min(2 * sleep, _MAX_SLEEP_S)


@dataclass
class RingStats:
    """``written``/``read`` are shared counters; waits and wait times are this process's."""
    written: int
    read: int
    writer_waits: int
    reader_waits: int
    writer_wait_s: float
    reader_wait_s: float


class BatchRing:
    """SPSC ring of ``n_slots`` mini-batch slots laid out from ``spec`` in one shared block.

    Producer: ``views = ring.acquire_write(timeout)``; fill ``views[name][...]``;
    ``ring.commit_write()`` (or ``ring.put(batch, timeout)``).
    Consumer: ``views = ring.acquire_read(timeout)``; use the views (valid until release);
    ``ring.release_read()``. ``views['_seq']`` is the batch's 0-based sequence number.
    ``timeout``: None waits forever, 0 does not wait; both acquires return None on timeout.
    """

    def __init__(self, shm: SharedMemory, spec: Spec, n_slots: int, owner: bool):
        self._shm, self._owner, self.name = shm, owner, shm.name.lstrip("/")
        self.spec, self.slot_bytes, _ = self._layout(spec, n_slots)
        self.n_slots = int(n_slots)
        self._closed = self._unlinked = False
        self._map()
        self._writing: int | None = None  # index being written (acquired, not committed)
        self._reading: int | None = None
        self._waits = [0, 0]
        self._wait_s = [0.0, 0.0]

    def _map(self) -> None:
        # Views hang off one frombuffer array: it holds a buffer export, so close() fails
        # loudly instead of unmapping memory that live views still point to.
        mem = np.frombuffer(self._shm.buf, np.uint8)
        self._hdr = np.ndarray((_HEADER_BYTES // 8,), np.uint64, mem, 0)
        self._slot_seq: list[np.ndarray] = []
        self._slots: list[dict[str, np.ndarray]] = []
        for i in range(self.n_slots):
            base = _HEADER_BYTES + i * self.slot_bytes
            self._slot_seq.append(np.ndarray((1,), np.uint64, mem, base))
            off, views = base + _ALIGN, {}
            for name, (shape, dtype) in self.spec.items():
                views[name] = np.ndarray(shape, dtype, mem, off)
                off += _align(views[name].nbytes)
            self._slots.append(views)

    # ----- layout -----
    @staticmethod
    def _layout(spec: Spec, n_slots: int) -> tuple[dict, int, int]:
        if isinstance(n_slots, bool) or not isinstance(n_slots, (int, np.integer)) or n_slots < 1:
            raise ValueError(f"n_slots must be an int >= 1, got {n_slots!r}")
        norm = normalize_spec(spec)
        slot_bytes = _ALIGN + sum(_align(int(np.prod(s, dtype=np.int64)) * d.itemsize) for s, d in norm.values())
        h = spec_hash([f"ring{_LAYOUT_VERSION}", str(int(n_slots))]
                      + [f"{k}:{s}:{d.str}" for k, (s, d) in norm.items()])
        return norm, slot_bytes, h

    @classmethod
    def nbytes(cls, spec: Spec, n_slots: int) -> int:
        """Size of the shared block for this spec and slot count."""
        return _HEADER_BYTES + n_slots * cls._layout(spec, n_slots)[1]

    @classmethod
    def create(cls, name: str, spec: Spec, n_slots: int) -> BatchRing:
        """Create the shared block (the owner unlinks it)."""
        norm, slot_bytes, h = cls._layout(spec, n_slots)
        shm = open_shm(name, _HEADER_BYTES + n_slots * slot_bytes, create=True)
        hdr = np.ndarray((_HEADER_BYTES // 8,), np.uint64, shm.buf, 0)
        hdr[_H_LAYOUT], hdr[_H_HASH], hdr[_H_SLOTS], hdr[_H_SLOT_BYTES] = _LAYOUT_VERSION, h, n_slots, slot_bytes
        hdr[_H_MAGIC] = _MAGIC  # last: an attacher never sees a half-written header as valid
        del hdr
        return cls(shm, norm, n_slots, owner=True)

    @classmethod
    def attach(cls, name: str, spec: Spec, n_slots: int) -> BatchRing:
        """Attach to a ring created elsewhere; raises ValueError if spec or n_slots differ."""
        norm, slot_bytes, h = cls._layout(spec, n_slots)
        shm = open_shm(name, _HEADER_BYTES, create=False)
        hdr = np.ndarray((_HEADER_BYTES // 8,), np.uint64, shm.buf, 0)
        magic, got_hash, got_slots = int(hdr[_H_MAGIC]), int(hdr[_H_HASH]), int(hdr[_H_SLOTS])
        del hdr
        problem = None
        if magic != _MAGIC:
            problem = "is not an initialised BatchRing"
        elif got_hash != h:
            problem = (f"was created with a different spec or slot count "
                       f"(its n_slots={got_slots}, yours={n_slots}; spec hash mismatch)")
        elif shm.size < _HEADER_BYTES + n_slots * slot_bytes:
            problem = f"is too small ({shm.size} bytes) for this spec"
        if problem:
            shm.close()
            raise ValueError(f"shared memory {name!r} {problem}")
        return cls(shm, norm, n_slots, owner=False)

    # ----- producer -----
    def acquire_write(self, timeout: float | None = None) -> dict[str, np.ndarray] | None:
        """Views into the next free slot, or None if the ring stayed full for ``timeout`` s."""
        if self._writing is not None:
            raise RuntimeError("acquire_write() called twice without commit_write()")
        w = int(self._hdr[_H_WRITE])
        t0 = time.perf_counter()
        ok, waited = wait_until(lambda: w - int(self._hdr[_H_READ]) < self.n_slots, timeout)
        if waited:
            self._waits[0] += 1
            self._wait_s[0] += time.perf_counter() - t0
        if not ok:
            return None
        self._writing = w
        return dict(self._slots[w % self.n_slots])

    def commit_write(self) -> int:
        """Publish the acquired slot; returns its sequence number."""
        w = self._writing
        if w is None:
            raise RuntimeError("commit_write() without acquire_write()")
        self._slot_seq[w % self.n_slots][0] = w + 1  # after the data, before the index
        self._hdr[_H_WRITE] = w + 1
        self._writing = None
        return w

    def put(self, batch: Mapping[str, Any], timeout: float | None = None) -> bool:
        """Copy ``batch`` (name -> array of the spec's shape) into a slot; False on timeout."""
        if set(batch) != set(self.spec):
            raise ValueError(f"batch keys {sorted(batch)} != spec keys {sorted(self.spec)}")
        for name, (shape, _) in self.spec.items():
            if tuple(np.shape(batch[name])) != shape:
                raise ValueError(f"batch[{name!r}] has shape {np.shape(batch[name])}, spec says {shape}")
        views = self.acquire_write(timeout)
        if views is None:
            return False
        try:
            for name, v in views.items():
                np.copyto(v, batch[name], casting="same_kind")
        except BaseException:
            self._writing = None  # slot was never published; it stays free
            raise
        self.commit_write()
        return True

    # ----- consumer -----
    def acquire_read(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Zero-copy views of the oldest committed batch plus ``'_seq'``; None on timeout."""
        if self._reading is not None:
            raise RuntimeError("acquire_read() called twice without release_read()")
        r = int(self._hdr[_H_READ])
        t0 = time.perf_counter()
        ok, waited = wait_until(lambda: int(self._hdr[_H_WRITE]) > r, timeout)
        if waited:
            self._waits[1] += 1
            self._wait_s[1] += time.perf_counter() - t0
        if not ok:
            return None
        stamp = int(self._slot_seq[r % self.n_slots][0])
        if stamp != r + 1:
            raise RuntimeError(f"ring {self.name!r}: slot {r % self.n_slots} holds batch {stamp - 1}, "
                               f"expected {r} (more than one producer or consumer?)")
        self._reading = r
        out: dict[str, Any] = dict(self._slots[r % self.n_slots])
        out["_seq"] = r
        return out

    def release_read(self) -> None:
        """Hand the slot back to the producer; its views must no longer be used."""
        if self._reading is None:
            raise RuntimeError("release_read() without acquire_read()")
        self._hdr[_H_READ] = self._reading + 1
        self._reading = None

    # ----- misc -----
    def pending(self) -> int:
        """Committed batches not yet released by the consumer."""
        return int(self._hdr[_H_WRITE]) - int(self._hdr[_H_READ])

    def stats(self) -> RingStats:
        return RingStats(int(self._hdr[_H_WRITE]), int(self._hdr[_H_READ]),
                         self._waits[0], self._waits[1], self._wait_s[0], self._wait_s[1])

    def replaced(self) -> bool:
        """True when the name now holds another segment (its creator restarted)."""
        now = segment_id(self.name)
        return now is not None and now != mapped_id(self._shm)

    def close(self) -> None:
        """Unmap this process's view (all returned views must be dropped first)."""
        if self._closed:
            return
        self._hdr = None
        self._slots, self._slot_seq = [], []
        try:
            close_shm(self._shm, f"ring {self.name!r}")
        except RuntimeError:
            self._map()  # still usable; the caller drops its views and closes again
            raise
        self._closed = True

    def unlink(self) -> None:
        """Remove the segment name (owner only); attached processes keep their mapping."""
        if not self._owner:
            raise RuntimeError(f"ring {self.name!r}: only the creating process unlinks")
        if not self._unlinked:
            self._shm.unlink()
            self._unlinked = True

    def __enter__(self) -> BatchRing:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        if self._owner:
            self.unlink()

