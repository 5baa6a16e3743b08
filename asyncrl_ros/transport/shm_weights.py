"""Versioned weights in shared memory: one learner publishes, any number of readers copy.

A seqlock guards the block: the writer makes the sequence odd, copies, then makes it even,
so ``version = seq // 2`` counts completed publishes. A reader reads seq, copies, reads seq
again and keeps the copy only if both reads match and are even: it never keeps a torn copy
and never blocks the writer. The order of those steps is made explicit with fences
(``shm_segment``: the writer's odd store is fenced before the copy and the even one released
after it; a reader's first read is an acquire and its copy is fenced before the re-read), so
it holds on x86-64 and AArch64 alike.
"""
from __future__ import annotations

import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import torch

from asyncrl_ros.transport.shm_segment import ALIGN as _ALIGN
from asyncrl_ros.transport.shm_segment import MAX_SLEEP_S as _MAX_SLEEP_S
from asyncrl_ros.transport.shm_segment import MIN_SLEEP_S as _MIN_SLEEP_S
from asyncrl_ros.transport.shm_segment import SharedBlock, fence, load_acquire, spec_hash, store_release

_MAGIC = int.from_bytes(b"ASRLWTS1", "little")
_LAYOUT_VERSION = 1
_H_MAGIC, _H_LAYOUT, _H_HASH, _H_NBYTES = 0, 1, 2, 3
_H_SEQ = _ALIGN // 8  # own cache line
_HEADER_BYTES = 2 * _ALIGN


@dataclass(frozen=True)
class _Entry:
    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    offset: int  # from the start of the data area
    nbytes: int


def _layout(example: Mapping[str, torch.Tensor]) -> tuple[list[_Entry], int, int]:
    if not isinstance(example, Mapping) or not example:
        raise ValueError("example state_dict must be a non-empty mapping name -> tensor")
    entries, off = [], 0
    for key in sorted(example):
        t = example[key]
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"state_dict[{key!r}] is {type(t).__name__}, not a torch.Tensor")
        nbytes = t.numel() * t.element_size()
        entries.append(_Entry(key, tuple(t.shape), t.dtype, off, nbytes))
        off += (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
    h = spec_hash([f"weights{_LAYOUT_VERSION}"] + [f"{e.key}:{e.shape}:{e.dtype}" for e in entries])
    return entries, off, h


@dataclass
class _Loader:
    """Per-module state of ``load_into``: the tensors to fill and, for device modules, a
    pinned staging buffer."""
    dsts: list[torch.Tensor]
    staging: np.ndarray | None
    version: int = 0


class WeightStore(SharedBlock):
    """Seqlock-versioned copy of a fixed-layout torch state_dict in one shared block.

    Writer: ``publish(state_dict) -> version``. Readers: ``latest_version()``,
    ``try_read(into) -> version | None``, ``load_into(module) -> version``.
    """

    KIND = "weight store"
    HEADER_BYTES = _HEADER_BYTES

    def __init__(self, shm: SharedMemory, example: Mapping[str, torch.Tensor], owner: bool):
        super().__init__(shm, owner)
        self._entries, self.nbytes, _ = _layout(example)
        self._map()
        self._pinned: np.ndarray | None = None  # writer staging for device tensors
        self._pinned_views: list[torch.Tensor] = []
        self._loaders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _map(self) -> None:
        mem = np.frombuffer(self._shm.buf, np.uint8)  # holds an export: see BatchRing._map
        self._hdr = np.ndarray((_HEADER_BYTES // 8,), np.uint64, mem, 0)
        self._data = mem[_HEADER_BYTES:_HEADER_BYTES + self.nbytes]
        self._view_list = list(self.state_dict_view(self._data).values())  # layout order

    def _unmap(self) -> None:
        self._hdr = self._data = None
        self._view_list = []

    # ----- create / attach -----
    @classmethod
    def create(cls, name: str, example: Mapping[str, torch.Tensor]) -> WeightStore:
        """Create the block with the layout of ``example`` (version 0: nothing published)."""
        _, nbytes, h = _layout(example)
        shm = cls._create_segment(name, _HEADER_BYTES + nbytes, _MAGIC,
                                  {_H_LAYOUT: _LAYOUT_VERSION, _H_HASH: h, _H_NBYTES: nbytes})
        return cls(shm, example, owner=True)

    @classmethod
    def attach(cls, name: str, example: Mapping[str, torch.Tensor]) -> WeightStore:
        """Attach by name; raises ValueError if ``example``'s layout differs from the creator's."""
        _, nbytes, h = _layout(example)
        shm = cls._attach_segment(
            name, _HEADER_BYTES + nbytes, _MAGIC, h,
            lambda hdr: "was created from a state_dict with different keys, shapes or dtypes")
        return cls(shm, example, owner=False)

    # ----- layout helpers -----
    @property
    def keys(self) -> list[str]:
        return [e.key for e in self._entries]

    def new_buffer(self) -> np.ndarray:
        """A private buffer for ``try_read`` (raw layout; see ``state_dict_view``)."""
        return np.empty(self.nbytes, np.uint8)

    def state_dict_view(self, buffer: np.ndarray) -> dict[str, torch.Tensor]:
        """Tensors viewing a raw-layout uint8 buffer (no copy)."""
        if not isinstance(buffer, np.ndarray) or buffer.dtype != np.uint8 or buffer.shape != (self.nbytes,):
            raise ValueError(f"buffer must be a uint8 numpy array of shape ({self.nbytes},)")
        flat = torch.from_numpy(buffer)
        return {e.key: flat[e.offset:e.offset + e.nbytes].view(e.dtype).view(e.shape) for e in self._entries}

    def _check(self, sd: Mapping[str, torch.Tensor], what: str, strict: bool) -> list[torch.Tensor]:
        missing = [e.key for e in self._entries if e.key not in sd]
        extra = sorted(set(sd) - set(self.keys)) if strict else []
        if missing or extra:
            raise ValueError(f"{what}: missing keys {missing}, unexpected keys {extra}")
        out = []
        for e in self._entries:
            t = sd[e.key]
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != e.shape or t.dtype != e.dtype:
                got = (tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{what}[{e.key!r}] is {got}, layout says {(e.shape, e.dtype)}")
            out.append(t)
        return out

    # ----- writer -----
    def publish(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True) -> int:
        """Copy ``state_dict`` in and return the new version (1, 2, ...); one writer only.

        ``strict=False`` ignores extra keys (e.g. publish a full agent's dict to an actor store).
        """
        srcs = self._check(state_dict, "published state_dict", strict)
        if any(t.device.type != "cpu" for t in srcs):
            # Device-to-host copies happen before the odd window, so readers retry less.
            if self._pinned is None:
                self._pinned = torch.empty(self.nbytes, dtype=torch.uint8).pin_memory().numpy()
                self._pinned_views = list(self.state_dict_view(self._pinned).values())
            with torch.no_grad():
                for d, t in zip(self._pinned_views, srcs):
                    d.copy_(t)
            copy = lambda: np.copyto(self._data, self._pinned)  # noqa: E731
        else:
            def copy() -> None:
                with torch.no_grad():
                    torch._foreach_copy_(self._view_list, srcs)
        seq = int(self._hdr[_H_SEQ])
        seq -= seq & 1  # a writer that died mid-copy left it odd: that version never completed
        self._hdr[_H_SEQ] = seq + 1  # odd: readers discard what they copy from now on
        fence()  # the odd seq is seen before any of the new data
        copy()
        store_release(self._hdr, _H_SEQ, seq + 2)  # even, after the data
        return (seq + 2) // 2

    # ----- readers -----
    def latest_version(self) -> int:
        """Number of completed publishes (0 = nothing published yet)."""
        return int(self._hdr[_H_SEQ]) // 2

    def try_read(self, into: Mapping[str, torch.Tensor] | np.ndarray) -> int | None:
        """Copy the latest weights into ``into`` (a state_dict of tensors or a raw uint8 buffer
        from ``new_buffer``); return their version, or None if nothing was published yet or a
        publish overlapped the copy (``into`` then holds garbage: retry later)."""
        if isinstance(into, np.ndarray):
            if into.dtype != np.uint8 or into.shape != (self.nbytes,):
                raise ValueError(f"into must be a uint8 numpy array of shape ({self.nbytes},)")
            copy = lambda: np.copyto(into, self._data)  # noqa: E731
        else:
            dsts = self._check(into, "into", strict=True)

            def copy() -> None:
                with torch.no_grad():
                    for d, t in zip(dsts, self._view_list):
                        d.copy_(t)
        s1 = load_acquire(self._hdr, _H_SEQ)  # the copy reads nothing older than s1
        if s1 == 0 or s1 & 1:
            return None
        copy()
        fence()  # the copy is done before seq is read again
        return s1 // 2 if int(self._hdr[_H_SEQ]) == s1 else None

    def load_into(self, module: torch.nn.Module, stall_timeout: float = 1.0) -> int:
        """Copy the latest weights into ``module``'s tensors in place if their version changed.

        Returns the version the module now holds (0 = never loaded); a publish in progress
        when called leaves the module untouched. CPU modules are copied straight from shared
        memory (one copy) and re-copied if a publish overlapped, so the module is consistent
        whenever this returns; a writer stuck mid-publish for ``stall_timeout`` s raises
        RuntimeError. Device modules go through a validated pinned staging copy. Callers must
        not run the module concurrently with this call (it is updated in place).
        """
        ld = self._loaders.get(module)
        if ld is None:
            dsts = self._check(module.state_dict(), f"{type(module).__name__}.state_dict()", strict=True)
            staging = None
            if any(d.device.type != "cpu" for d in dsts):
                staging = torch.empty(self.nbytes, dtype=torch.uint8).pin_memory().numpy()
            ld = self._loaders[module] = _Loader(dsts, staging)
        if self.latest_version() == ld.version:
            return ld.version
        if ld.staging is not None:
            got = self.try_read(ld.staging)
            if got is not None and got != ld.version:
                with torch.no_grad():  # blocking: the next call overwrites the staging buffer
                    for d, t in zip(ld.dsts, self.state_dict_view(ld.staging).values()):
                        d.copy_(t)
                ld.version = got
            return ld.version
        touched, sleep, deadline = False, _MIN_SLEEP_S, time.monotonic() + stall_timeout
        while True:
            s1 = load_acquire(self._hdr, _H_SEQ)
            if not s1 & 1:
                with torch.no_grad():
                    torch._foreach_copy_(ld.dsts, self._view_list)
                touched = True
                fence()
                if int(self._hdr[_H_SEQ]) == s1:
                    ld.version = s1 // 2
                    return ld.version
            elif not touched:
                return ld.version
            if time.monotonic() > deadline:
                raise RuntimeError(f"weight store {self.name!r}: writer stuck mid-publish for "
                                   f"{stall_timeout} s; {type(module).__name__} holds a torn copy")
            time.sleep(sleep)
            sleep = min(2 * sleep, _MAX_SLEEP_S)
