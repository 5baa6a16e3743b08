"""One POSIX shared-memory segment, done once for every shared block of the package
(`shm_ring.BatchRing`, `shm_weights.WeightStore`): create and attach it, who unlinks it,
noticing that its creator restarted, closing it while views are alive, and the memory
ordering with which a block publishes its data to another process.

Memory ordering. Each block publishes data through aligned uint64 counters in its header,
each written by exactly one process (the ring: slot data, then the write index; slot read,
then the read index. The weights: a seqlock). A counter is only ever read or written whole,
as one aligned 8-byte load or store (a numpy scalar get/set), which x86-64 and AArch64 both
perform single-copy atomically. Every access whose order matters goes through one of:

- ``store_release(words, i, v)``: ``fence(); words[i] = v``. Whatever this process wrote or
  read before is done before any other process sees ``v``.
- ``load_acquire(words, i)``: ``v = words[i]; fence()``. Nothing after it is read or written
  before ``v`` was read.
- the seqlock: the writer does ``seq = odd; fence(); copy; store_release(seq, even)``, and a
  reader does ``s1 = load_acquire(seq); copy; fence(); s2 = seq`` and keeps the copy only if
  ``s1 == s2`` and is even.

``fence()`` is a full hardware fence: libatomic's ``atomic_thread_fence(__ATOMIC_SEQ_CST)``
(``dmb ish`` on AArch64, ``mfence`` on x86-64), called through ctypes without releasing the
GIL: about 0.1 us, a few times per batch or weight copy. Without libatomic, x86-64 uses
no instruction: its stores become visible in program order and its loads are not reordered
with other loads or with later stores (TSO), which is all release and acquire need, and
CPython does not reorder the statements around the opaque calls. Any other CPU without
libatomic refuses to open a segment (``RuntimeError``) rather than run unordered.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

ALIGN = 64  # cache line: counters written by different processes sit on different lines
MIN_SLEEP_S = 1e-5
MAX_SLEEP_S = 5e-4
# Header words every block starts with (uint64 index); the magic is written last.
H_MAGIC, H_LAYOUT, H_HASH = 0, 1, 2

_SEQ_CST = 5  # __ATOMIC_SEQ_CST
_tracker_lock = threading.Lock()


# ----- memory ordering -----
def _load_fence() -> tuple[Callable[[], None] | None, str]:
    """(fence, how) for this machine; fence is None where ordering cannot be ensured."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    for lib in (ctypes.util.find_library("atomic"), "libatomic.so.1"):
        if not lib:
            continue
        try:
            # PyDLL: the call keeps the GIL (no thread switch inside a fence).
            c_fence = ctypes.PyDLL(lib).atomic_thread_fence
        except (OSError, AttributeError):
            continue
        c_fence.restype = None
        return functools.partial(c_fence, _SEQ_CST), f"{lib} atomic_thread_fence(seq_cst)"
    if x86:
        return (lambda: None), "x86-64 TSO (libatomic not found: no fence instruction needed)"
    return None, (f"no memory fence on {platform.machine()}: libatomic (libatomic.so.1, "
                  "e.g. apt install libatomic1) is needed for shared-memory transport there")


def check_ordering() -> None:
    """Raise RuntimeError where this CPU's memory ordering cannot be made explicit."""
    if _fence is None:
        raise RuntimeError(f"asyncrl_ros shared memory: {ORDERING}")


_fence, ORDERING = _load_fence()
# fence(): a full memory fence, no load or store moves across it (CPU or compiler).
fence: Callable[[], None] = _fence or check_ordering


def store_release(words: np.ndarray, i: int, value: int) -> None:
    """Publish ``value`` in counter ``words[i]`` after everything this process did before."""
    fence()
    words[i] = value


def load_acquire(words: np.ndarray, i: int) -> int:
    """Read counter ``words[i]``; nothing this process does after is moved before the read."""
    value = int(words[i])
    fence()
    return value


# ----- segments -----
def open_shm(name: str, size: int, create: bool) -> SharedMemory:
    """Create (tracked, so a crashed owner still frees it) or attach (untracked) a segment.

    Python 3.11 registers attached segments with the resource tracker too, which then
    unlinks them when the *attaching* process exits. Unregistering after the fact is not
    enough: a spawn child shares its parent's tracker, so it would drop the owner's
    registration. So the attacher never registers at all.
    """
    check_ordering()
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


def spec_hash(parts: list[str]) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest(), "little")


def wait_until(cond: Callable[[], bool], timeout: float | None) -> tuple[bool, bool]:
    """Poll ``cond`` with exponential sleeps (10 us .. 0.5 ms). Returns (ok, had_to_wait)."""
    if cond():
        return True, False
    if timeout is not None and timeout <= 0:
        return False, True
    deadline = None if timeout is None else time.monotonic() + timeout
    sleep = MIN_SLEEP_S
    while True:
        time.sleep(sleep)
        if cond():
            return True, True
        if deadline is not None and time.monotonic() >= deadline:
            return False, True
        sleep = min(2 * sleep, MAX_SLEEP_S)


class SharedBlock:
    """One segment with a header (magic, layout version, layout hash, then the subclass's
    words): creation and checked attachment, restart detection and lifetime. Subclasses
    set ``KIND`` (for messages) and ``HEADER_BYTES`` and build their views in ``_map``/drop
    them in ``_unmap``."""

    KIND = "shared block"
    HEADER_BYTES = ALIGN

    def __init__(self, shm: SharedMemory, owner: bool):
        self._shm, self._owner, self.name = shm, owner, shm.name.lstrip("/")
        self._closed = self._unlinked = False

    @classmethod
    def _create_segment(cls, name: str, size: int, magic: int, words: dict[int, int]) -> SharedMemory:
        """A new segment with its header written; the magic goes last, released, so an
        attacher never takes a half-written header for a valid one."""
        shm = open_shm(name, size, create=True)
        hdr = np.ndarray((cls.HEADER_BYTES // 8,), np.uint64, shm.buf, 0)
        for i, v in words.items():
            hdr[i] = v
        store_release(hdr, H_MAGIC, magic)
        del hdr
        return shm

    @classmethod
    def _attach_segment(cls, name: str, size: int, magic: int, layout_hash: int,
                        mismatch: Callable[[np.ndarray], str], small: str = "") -> SharedMemory:
        """Attach and check magic, layout hash and size; ValueError (nothing kept) if any
        differs. ``mismatch(header)`` words the hash mismatch, ``small`` ends the size one."""
        shm = open_shm(name, cls.HEADER_BYTES, create=False)
        hdr = np.ndarray((cls.HEADER_BYTES // 8,), np.uint64, shm.buf, 0)
        if load_acquire(hdr, H_MAGIC) != magic:
            problem = f"is not an initialised {cls.__name__}"
        elif int(hdr[H_HASH]) != layout_hash:
            problem = mismatch(hdr.copy())
        elif shm.size < size:
            problem = f"is too small ({shm.size} bytes){small}"
        else:
            problem = None
        del hdr
        if problem:
            shm.close()
            raise ValueError(f"shared memory {name!r} {problem}")
        return shm

    def _map(self) -> None:
        raise NotImplementedError

    def _unmap(self) -> None:
        raise NotImplementedError

    def replaced(self) -> bool:
        """True when the name now holds another segment (its creator restarted)."""
        now = segment_id(self.name)
        return now is not None and now != mapped_id(self._shm)

    def close(self) -> None:
        """Unmap this process's view (every view handed out must be dropped first)."""
        if self._closed:
            return
        self._unmap()
        try:
            close_shm(self._shm, f"{self.KIND} {self.name!r}")
        except RuntimeError:
            self._map()  # still usable; the caller drops its views and closes again
            raise
        self._closed = True

    def unlink(self) -> None:
        """Remove the segment name (owner only); attached processes keep their mapping."""
        if not self._owner:
            raise RuntimeError(f"{self.KIND} {self.name!r}: only the creating process unlinks")
        if not self._unlinked:
            self._shm.unlink()
            self._unlinked = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        if self._owner:
            self.unlink()
