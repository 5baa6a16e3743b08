"""A replay's arrays as memory-mapped files in the run folder, committed incrementally.

Each array is a full-capacity `.npy` file mapped into memory (a sparse file: only rows ever
written take disk space). The replay writes its rows straight into the mapping, so nothing
is held twice: a resume maps the files back instead of reading them into new arrays, at
~1x memory (page cache, which the kernel can drop) instead of the 2x a load + copy peaks at.

`commit(counters)` is the checkpoint: flush the mapped pages (only those written since the
last commit are dirty, so only what is new is written), then replace `meta.json` atomically.
What a reader trusts is `meta.json`: rows written after the last commit (a crash mid-episode)
are ignored on resume. Rows that overwrite committed ones (the ring wraps) are announced in
`meta.json` first (`reserve`), so a resume knows which committed rows may be gone, whatever
order the kernel wrote pages in before a power loss (see FrameReplay._resume).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from asyncrl_ros.transport.atomic_file import write_atomically

FORMAT = 'asyncrl_ros.agent.replay/1'
META = 'meta.json'
# The replay owner's folder in a run folder.
REPLAY_FOLDER = 'replay'


def replay_signature(capacity: int, frame_shape, proprio_dim: int, action_dim: int,
                     frame_stack: int) -> dict:
    """What a replay folder must match to be resumed by a replay of these settings."""
    return {'capacity': int(capacity), 'frame_shape': [int(s) for s in frame_shape],
            'proprio_dim': int(proprio_dim), 'action_dim': int(action_dim),
            'frame_stack': int(frame_stack)}


class ReplayFolderError(ValueError):
    """A replay folder that does not belong to this run's settings."""


def read_meta(folder: str | os.PathLike) -> dict | None:
    """The committed counters of the replay in `folder`, or None when it holds none."""
    path = Path(folder) / META
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ReplayFolderError(f'{path} is unreadable ({err}): not a replay this package wrote') from None
    if meta.get('format') != FORMAT:
        raise ReplayFolderError(f'{path} is not an asyncrl_ros replay (expected format {FORMAT!r})')
    return meta


def check_signature(folder: str | os.PathLike, signature: dict) -> dict | None:
    """Raise one clear line when the replay in `folder` was written with other settings."""
    meta = read_meta(folder)
    if meta is None:
        return None
    theirs = meta['signature']
    diff = [f'{k}={theirs.get(k)} (this run: {v})' for k, v in signature.items() if theirs.get(k) != v]
    if diff:
        raise ReplayFolderError(f'the replay in {folder} was written by a run with other settings: '
                                f'{", ".join(diff)}; resume with the same settings, or start a new run folder')
    return meta


class ReplayFiles:
    """Memory-mapped arrays of one replay, and its atomically committed counters."""

    def __init__(self, folder: str | os.PathLike, signature: dict, resume: bool):
        self.folder = Path(folder)
        # JSON round trip: tuples become lists, as they will be when read back.
        self.signature = json.loads(json.dumps(signature))
        self.meta = check_signature(self.folder, self.signature) if resume else None
        if self.meta is None:   # a new replay: drop any old counters first (their arrays go next)
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / META).unlink(missing_ok=True)
        self.arrays: dict[str, np.memmap] = {}

    def array(self, name: str, shape: tuple, dtype) -> np.memmap:
        path = self.folder / f'{name}.npy'
        if self.meta is not None:
            arr = np.load(path, mmap_mode='r+')
            if arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
                raise ReplayFolderError(f'{path} holds {arr.dtype} {arr.shape}, expected '
                                        f'{np.dtype(dtype)} {tuple(shape)}')
        else:
            # Sparse: creating a 20 GB replay writes a header and nothing else.
            arr = np.lib.format.open_memmap(path, mode='w+', dtype=dtype, shape=tuple(shape))
        self.arrays[name] = arr
        return arr

    @property
    def reserved_until(self) -> int:
        """Rows up to this frame may be written without a word to meta.json (none before the
        first commit: there is nothing to overwrite)."""
        return 1 << 62 if self.meta is None else int(self.meta['reserved_until'])

    def reserve(self, until: int) -> None:
        """Announce that rows up to frame `until` will be written before the next commit."""
        self._write_meta({**self.meta, 'reserved_until': int(until)})

    def commit(self, counters: dict, reserved_until: int) -> None:
        """Make everything written so far durable, then point meta.json at it."""
        for arr in self.arrays.values():
            arr.flush()   # msync: only the pages written since the last commit are dirty
        self._write_meta({'format': FORMAT, 'signature': self.signature, **counters,
                          'reserved_until': int(reserved_until)})

    def _write_meta(self, meta: dict) -> None:
        # Atomic, and the rename itself survives a power loss: readers trust meta.json.
        write_atomically(self.folder / META, lambda f: json.dump(meta, f), mode='w', sync_dir=True)
        self.meta = meta

    @property
    def nbytes_on_disk(self) -> int:
        """Disk blocks the arrays actually use (sparse files: only what was written)."""
        return sum(os.stat(self.folder / f'{name}.npy').st_blocks * 512 for name in self.arrays)
