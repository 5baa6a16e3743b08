"""Single-producer/single-consumer ring of mini-batch slots in POSIX shared memory.

The replay sampler writes each mini-batch straight into a preallocated slot (the only copy);
the learner reads numpy views of that slot (zero-copy) and releases it when done. This
replaces the pickled ``multiprocessing.Queue`` of the seeds' ReLoD system.

Ordering: every counter is an aligned uint64 in the shared block written by exactly one
process, and it is published with release and read with acquire ordering
(``shm_segment.store_release``/``load_acquire``, explicit fences that hold on x86-64 and
AArch64 alike). Producer: slot data and slot seq, then (release) the write index. Consumer:
the write index (acquire), then the slot; done reading, then (release) the read index, which
the producer reads (acquire) before it overwrites the slot.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

# Segment helpers live in shm_segment; the old names stay importable from here.
from asyncrl_ros.transport.shm_segment import ALIGN as _ALIGN
from asyncrl_ros.transport.shm_segment import (SharedBlock, close_shm, load_acquire, mapped_id,  # noqa: F401
                                     open_shm, segment_id, spec_hash, store_release,
                                     unlink_stale, wait_until)

Spec = Mapping[str, tuple[tuple[int, ...], Any]]

_MAGIC = int.from_bytes(b"ASRLRNG1", "little")
_LAYOUT_VERSION = 1
# Header words (uint64 index); write and read index each own a cache line.
_H_MAGIC, _H_LAYOUT, _H_HASH, _H_SLOTS, _H_SLOT_BYTES = 0, 1, 2, 3, 4
_H_WRITE = _ALIGN // 8
_H_READ = 2 * _ALIGN // 8
_HEADER_BYTES = 4 * _ALIGN


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


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


@dataclass
class RingStats:
    """``written``/``read`` are shared counters; waits and wait times are this process's."""
    written: int
    read: int
    writer_waits: int
    reader_waits: int
    writer_wait_s: float
    reader_wait_s: float


class BatchRing(SharedBlock):
    """SPSC ring of ``n_slots`` mini-batch slots laid out from ``spec`` in one shared block.

    Producer: ``views = ring.acquire_write(timeout)``; fill ``views[name][...]``;
    ``ring.commit_write()`` (or ``ring.put(batch, timeout)``).
    Consumer: ``views = ring.acquire_read(timeout)``; use the views (valid until release);
    ``ring.release_read()``. ``views['_seq']`` is the batch's 0-based sequence number.
    ``timeout``: None waits forever, 0 does not wait; both acquires return None on timeout.
    """

    KIND = "ring"
    HEADER_BYTES = _HEADER_BYTES

    def __init__(self, shm: SharedMemory, spec: Spec, n_slots: int, owner: bool):
        super().__init__(shm, owner)
        self.spec, self.slot_bytes, _ = self._layout(spec, n_slots)
        self.n_slots = int(n_slots)
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

    def _unmap(self) -> None:
        self._hdr = None
        self._slots, self._slot_seq = [], []

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
        shm = cls._create_segment(name, _HEADER_BYTES + n_slots * slot_bytes, _MAGIC, {
            _H_LAYOUT: _LAYOUT_VERSION, _H_HASH: h, _H_SLOTS: n_slots, _H_SLOT_BYTES: slot_bytes})
        return cls(shm, norm, n_slots, owner=True)

    @classmethod
    def attach(cls, name: str, spec: Spec, n_slots: int) -> BatchRing:
        """Attach to a ring created elsewhere; raises ValueError if spec or n_slots differ."""
        norm, slot_bytes, h = cls._layout(spec, n_slots)
        shm = cls._attach_segment(
            name, _HEADER_BYTES + n_slots * slot_bytes, _MAGIC, h,
            lambda hdr: (f"was created with a different spec or slot count (its "
                         f"n_slots={int(hdr[_H_SLOTS])}, yours={n_slots}; spec hash mismatch)"),
            small=" for this spec")
        return cls(shm, norm, n_slots, owner=False)

    # ----- producer -----
    def acquire_write(self, timeout: float | None = None) -> dict[str, np.ndarray] | None:
        """Views into the next free slot, or None if the ring stayed full for ``timeout`` s."""
        if self._writing is not None:
            raise RuntimeError("acquire_write() called twice without commit_write()")
        w = int(self._hdr[_H_WRITE])
        t0 = time.perf_counter()
        # Acquire: the consumer's reads of the slot are done before we overwrite it.
        ok, waited = wait_until(lambda: w - load_acquire(self._hdr, _H_READ) < self.n_slots, timeout)
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
        self._slot_seq[w % self.n_slots][0] = w + 1
        store_release(self._hdr, _H_WRITE, w + 1)  # data and slot seq are seen before the index
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
        # Acquire: the slot is read only after the index that publishes it.
        ok, waited = wait_until(lambda: load_acquire(self._hdr, _H_WRITE) > r, timeout)
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
        store_release(self._hdr, _H_READ, self._reading + 1)  # our reads end before its writes
        self._reading = None

    # ----- misc -----
    def pending(self) -> int:
        """Committed batches not yet released by the consumer."""
        return int(self._hdr[_H_WRITE]) - int(self._hdr[_H_READ])

    def stats(self) -> RingStats:
        return RingStats(int(self._hdr[_H_WRITE]), int(self._hdr[_H_READ]),
                         self._waits[0], self._waits[1], self._wait_s[0], self._wait_s[1])
